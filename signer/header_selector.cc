#include "signer/header_selector.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "signer/internal/text.h"

namespace dkimrotor::signer {
namespace {

// Fields an MTA adds to a message that lacks them, after the milter has signed it.
bool AddedInTransitWhenMissing(std::string_view key) {
  return key == "date" || key == "message-id";
}

}  // namespace

HeaderPolicy HeaderPolicy::Default() {
  HeaderPolicy p;
  p.sign = {"from",        "reply-to",   "subject",      "date",
            "to",          "cc",         "resent-*",     "in-reply-to",
            "references",  "message-id", "mime-version", "content-type",
            "content-transfer-encoding", "list-id",      "list-*"};
  p.oversign = {"from", "subject", "date", "to", "cc", "reply-to", "message-id"};
  return p;
}

HeaderSelector::HeaderSelector(HeaderPolicy policy) : policy_(std::move(policy)) {
  for (auto* list : {&policy_.sign, &policy_.oversign})
    for (auto& name : *list) name = internal::LowerAscii(name);
}

bool HeaderSelector::Matches(std::string_view key) const {
  for (const auto& pattern : policy_.sign) {
    if (!pattern.empty() && pattern.back() == '*') {
      std::string_view prefix(pattern.data(), pattern.size() - 1);
      if (key.size() > prefix.size() && key.substr(0, prefix.size()) == prefix) return true;
    } else if (key == pattern) {
      return true;
    }
  }
  return false;
}

std::vector<std::string> HeaderSelector::SelectNames(const std::vector<HeaderField>& fields) const {
  std::vector<std::string> names;
  std::unordered_map<std::string, int> occurrences;  // every field of the message, by key
  std::unordered_map<std::string, int> listed;       // how often each key is in `names`
  // A name with one instance verifiers read differently stays out of h= altogether, oversigning
  // included: h= picks instances bottom-up by name, so it cannot skip that one instance.
  std::unordered_set<std::string> unsignable;
  for (const auto& f : fields)
    if (CheckField(f.name, f.value).reading != FieldReading::kPlain) unsignable.insert(FieldKey(f.name));
  for (const auto& f : fields) {
    std::string key = FieldKey(f.name);
    ++occurrences[key];
    if (unsignable.contains(key)) continue;
    if (key == "from" || Matches(key)) {
      ++listed[key];
      names.push_back(std::move(key));
    }
  }
  if (listed["from"] == 0) {
    names.insert(names.begin(), "from");
    ++listed["from"];
  }
  // Oversigning: one entry more than the message has instances, so that an instance added
  // later (anywhere) makes the signature fail, whether or not the name is in `sign`. Date and
  // Message-ID are the exception when absent: RFC 5322 wants them, and an MTA adds them after
  // the milter (Sendmail does), so oversigning them would break the signature of every message
  // a script sends without them; adding one later changes nothing a reader relies on.
  for (const auto& name : policy_.oversign) {
    if (name.empty() || name.back() == '*') continue;  // a pattern cannot be oversigned
    if (unsignable.contains(name) || name.find(';') != std::string::npos) continue;
    if (occurrences[name] == 0 && AddedInTransitWhenMissing(name)) continue;
    for (int i = listed[name]; i <= occurrences[name]; ++i) names.push_back(name);
    listed[name] = occurrences[name] + 1;
  }
  return names;
}

std::vector<const HeaderField*> CollectSignedFields(const std::vector<HeaderField>& fields,
                                                    const std::vector<std::string>& names) {
  // For each key, the indexes of its instances still unused, the last one at the back.
  std::unordered_map<std::string, std::vector<size_t>> remaining;
  for (size_t i = 0; i < fields.size(); ++i) remaining[FieldKey(fields[i].name)].push_back(i);
  std::vector<const HeaderField*> out;
  out.reserve(names.size());
  for (const auto& name : names) {
    auto it = remaining.find(internal::LowerAscii(internal::TrimFws(name)));
    if (it == remaining.end() || it->second.empty()) continue;
    out.push_back(&fields[it->second.back()]);
    it->second.pop_back();
  }
  return out;
}

}  // namespace dkimrotor::signer

#include "signer/verifier.h"

#include "signer/internal/text.h"
#include "signer/message_signer.h"
#include "signer/signature_header.h"
#include "signer/tag_list.h"
#include "util/base64.h"

namespace dkimrotor::signer {
namespace {

util::Unexpected Invalid(std::string message) {
  return util::Err(util::ErrorCode::kInvalidArgument, std::move(message));
}

}  // namespace

std::string RemoveSignatureValue(std::string_view value) {
  std::string out;
  size_t start = 0;
  while (start <= value.size()) {
    size_t semi = value.find(';', start);
    size_t end = semi == std::string_view::npos ? value.size() : semi;
    std::string_view spec = value.substr(start, end - start);
    size_t eq = spec.find('=');
    if (eq != std::string_view::npos && internal::TrimFws(spec.substr(0, eq)) == "b") {
      out.append(spec.substr(0, eq + 1));
    } else {
      out.append(spec);
    }
    if (semi == std::string_view::npos) break;
    out.push_back(';');
    start = semi + 1;
  }
  return out;
}

MessageVerifier::Pending MessageVerifier::Parse(const HeaderField& field) const {
  Pending p;
  auto fail = [&](std::string why) {
    p.verdict.status = Invalid(std::move(why));
    return p;
  };
  auto tags = TagList::Parse(field.value);
  if (!tags) return fail(tags.error().message);
  auto get = [&](std::string_view name) { return tags->Get(name); };
  if (get("d")) p.verdict.domain = *get("d");
  if (get("s")) p.verdict.selector = *get("s");
  if (get("a")) p.verdict.algorithm = *get("a");
  for (const char* required : {"v", "a", "b", "bh", "d", "h", "s"})
    if (!get(required)) return fail(std::string("missing required tag ") + required + "=");
  if (*get("v") != "1") return fail("v= is not 1");
  if (get("l")) return fail("l= (body length limit) is not supported by this verifier");
  auto algorithm = ParseAlgorithm(*get("a"));
  if (!algorithm) return fail(algorithm.error().message);
  p.algorithm = *algorithm;
  if (auto c = get("c")) {
    auto canon = ParseCanonicalization(*c);
    if (!canon) return fail(canon.error().message);
    p.canon = *canon;
  } else {
    p.canon = Canonicalization{Canon::kSimple, Canon::kSimple};
  }
  std::string h = StripFws(*get("h"));
  size_t start = 0;
  while (start <= h.size()) {
    size_t colon = h.find(':', start);
    std::string name = h.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (name.empty()) return fail("h= has an empty header name");
    p.names.push_back(internal::LowerAscii(name));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  bool signs_from = false;
  for (const auto& n : p.names) signs_from |= (n == "from");
  if (!signs_from) return fail("h= does not include From (RFC 6376 5.4)");
  auto bh = util::Base64Decode(*get("bh"));
  if (!bh) return fail("bh= " + bh.error().message);
  auto b = util::Base64Decode(*get("b"));
  if (!b) return fail("b= " + b.error().message);
  p.body_hash = std::move(*bh);
  p.signature = std::move(*b);
  p.field_name = field.name;
  p.value_without_b = RemoveSignatureValue(field.value);
  return p;
}

void MessageVerifier::EndOfHeaders() {
  for (const auto& f : fields_) {
    if (FieldKey(f.name) != "dkim-signature") continue;
    pending_.push_back(Parse(f));
    const Pending& p = pending_.back();
    auto& slot = hashers_[static_cast<int>(p.canon.body)];
    if (p.verdict.status && !slot) slot = std::make_unique<BodyHasher>(p.canon.body);
  }
}

void MessageVerifier::AddBody(std::string_view chunk) {
  for (auto& h : hashers_)
    if (h) h->Update(chunk);
}

std::vector<SignatureVerdict> MessageVerifier::Finish() {
  std::string body_hash[2];
  for (int i = 0; i < 2; ++i)
    if (hashers_[i]) body_hash[i] = std::string(internal::AsBytes(hashers_[i]->Finish()));
  std::vector<SignatureVerdict> out;
  std::string input;
  for (auto& p : pending_) {
    if (p.verdict.status) {
      if (p.body_hash != body_hash[static_cast<int>(p.canon.body)]) {
        p.verdict.status = Invalid("body hash does not match bh= (the body was changed)");
      } else if (auto key = lookup_(p.verdict.domain, p.verdict.selector, p.algorithm); !key) {
        p.verdict.status = util::Unexpected{key.error()};
      } else if ((*key)->algorithm() != p.algorithm) {
        p.verdict.status = Invalid("the key's type does not match a=");
      } else {
        input.clear();
        AppendHeaderHashInput(p.canon.header, fields_, p.names, p.field_name, p.value_without_b,
                              &input);
        p.verdict.status = (*key)->Verify(internal::Sha256(input), p.signature);
      }
    }
    out.push_back(std::move(p.verdict));
  }
  return out;
}

}  // namespace dkimrotor::signer

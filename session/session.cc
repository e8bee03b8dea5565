#include "session/session.h"

#include <chrono>
#include <ctime>

#include "signer/algorithm.h"
#include "signer/from_domain.h"

namespace dkimrotor::session {
Session::Session(SigningService* service, std::shared_ptr<const Settings> settings,
                 std::shared_ptr<const keystore::SigningSnapshot> snapshot, MessageOverrides overrides)
    : service_(service), settings_(std::move(settings)), snapshot_(std::move(snapshot)),
      overrides_(std::move(overrides)) {
  service_->in_flight_.fetch_add(1, std::memory_order_relaxed);
}

Session::~Session() { service_->in_flight_.fetch_sub(1, std::memory_order_release); }

void Session::AddHeader(std::string_view name, std::string_view value) {
  if (signer_ || refused_ || !over_limit_.empty()) return;
  ++header_fields_;
  header_bytes_ += name.size() + 1 + value.size() + 2;  // "name:value" CRLF
  if (header_fields_ > settings_->max_header_fields)
    over_limit_ = "the header has more than " + std::to_string(settings_->max_header_fields) +
                  " fields (signing.max_header_fields)";
  else if (header_bytes_ > settings_->max_header_bytes)
    over_limit_ = "the header has more than " + std::to_string(settings_->max_header_bytes) +
                  " bytes (signing.max_header_bytes)";
  if (!over_limit_.empty()) {
    std::vector<signer::HeaderField>().swap(fields_);  // the memory goes back now, not at the end
    return;
  }
  fields_.push_back(signer::HeaderField{std::string(name), std::string(value)});
}

Verdict Session::Refuse(Refusal refusal, std::string reason) {
  Verdict v = SigningService::Refuse(*settings_, refusal, std::move(reason));
  service_->Report(id_, v);
  return v;
}

std::optional<Verdict> Session::EndOfHeaders() {
  if (refused_) return refused_;
  if (signer_) return std::nullopt;
  if (!over_limit_.empty()) return refused_ = Refuse(Refusal::kBadMessage, over_limit_);
  for (size_t i = 0; i < fields_.size(); ++i)
    if (!signer::IsFieldName(fields_[i].name))
      return refused_ = Refuse(Refusal::kBadMessage, "header field " + std::to_string(i + 1) +
                                                         " has no valid name (printable US-ASCII before the colon)");
  // Exactly one From field with one address: its domain is the one DMARC aligns with.
  const signer::HeaderField* from = nullptr;
  int count = 0;
  for (const auto& f : fields_)
    if (signer::FieldKey(f.name) == "from" && ++count == 1) from = &f;
  if (count == 0) return refused_ = Refuse(Refusal::kBadMessage, "no From header");
  if (count > 1) return refused_ = Refuse(Refusal::kBadMessage, std::to_string(count) + " From headers");
  std::string from_domain;
  if (overrides_.domain) {
    from_domain = *overrides_.domain;
  } else {
    auto parsed = signer::FromDomain(from->value);
    if (!parsed) return refused_ = Refuse(Refusal::kBadMessage, parsed.error().message);
    from_domain = std::move(*parsed);
  }
  const Settings::Domain* match = settings_->Match(from_domain);
  if (!match) return refused_ = Refuse(Refusal::kBadMessage, "From domain " + from_domain + " is not configured");
  auto keys = snapshot_ ? snapshot_->Pick(match->name) : keystore::SigningSnapshot::KeyList{};
  if (keys.empty())
    return refused_ = Refuse(Refusal::kError, match->name + " has no active key");

  signer::MessageOptions options;
  options.timestamp = overrides_.timestamp ? *overrides_.timestamp : static_cast<int64_t>(std::time(nullptr));
  options.lifetime = overrides_.lifetime ? overrides_.lifetime : settings_->signature_lifetime;
  domain_ = match->name;
  signer_.emplace(std::move(keys), &settings_->headers, options);
  for (auto& f : fields_) signer_->AddHeader(std::move(f));
  std::vector<signer::HeaderField>().swap(fields_);
  if (auto st = signer_->EndOfHeaders(); !st) {
    signer_.reset();
    return refused_ = Refuse(Refusal::kBadMessage, st.error().message);
  }
  return std::nullopt;
}

void Session::AddBody(std::string_view chunk) {
  if (signer_) signer_->AddBody(chunk);
}

Verdict Session::Finish(const Deliver& deliver) {
  if (finished_) return Refuse(Refusal::kError, "the session was finished twice");
  finished_ = true;
  if (auto refused = EndOfHeaders()) return *refused;
  const auto started = std::chrono::steady_clock::now();
  auto signatures = signer_->Finish();
  service_->sign_duration_.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (!signatures) return Refuse(Refusal::kError, "signing failed: " + signatures.error().message);
  if (auto st = deliver(*signatures); !st)
    return Refuse(Refusal::kError, "the signatures could not be added: " + st.error().message);
  Verdict v;
  v.outcome = Outcome::kSigned;
  v.signatures = std::move(*signatures);
  v.domain = domain_;
  service_->Report(id_, v);
  for (const auto& key : signer_->keys()) snapshot_->CountSignature(*key);
  if (service_->audit_) {
    const std::string_view id = id_.empty() ? std::string_view("-") : std::string_view(id_);
    for (const auto& key : signer_->keys())
      service_->audit_->info("signed {} d={} s={} a={}", id, key->domain(), key->selector(),
                             signer::AlgorithmName(key->algorithm()));
  }
  return v;
}

}  // namespace dkimrotor::session

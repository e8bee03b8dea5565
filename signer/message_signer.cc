#include "signer/message_signer.h"

#include <cstdint>

#include "signer/signature_header.h"
#include "util/base64.h"

namespace dkimrotor::signer {

void AppendHeaderHashInput(Canon mode, const std::vector<HeaderField>& fields,
                           const std::vector<std::string>& names, std::string_view signature_name,
                           std::string_view signature_value_without_b, std::string* out) {
  for (const HeaderField* f : CollectSignedFields(fields, names))
    AppendCanonicalHeader(mode, f->name, f->value, out);
  AppendSignatureField(mode, signature_name, signature_value_without_b, out);
}

void AppendSignatureField(Canon mode, std::string_view name, std::string_view value_without_b,
                          std::string* out) {
  AppendCanonicalHeader(mode, name, value_without_b, out);
  out->resize(out->size() - 2);  // the signature field is hashed without its CRLF
}

MessageSigner::MessageSigner(std::vector<std::shared_ptr<const SigningKey>> keys,
                             const HeaderSelector* selector, MessageOptions options)
    : keys_(std::move(keys)), selector_(selector), options_(options) {}

void MessageSigner::AddHeader(std::string_view name, std::string_view value) {
  fields_.push_back(HeaderField{std::string(name), std::string(value)});
}

util::Status MessageSigner::EndOfHeaders() {
  if (!headers_status_) headers_status_ = CheckHeaders();
  return *headers_status_;
}

util::Status MessageSigner::CheckHeaders() {
  int from = 0;
  for (size_t i = 0; i < fields_.size(); ++i) {
    const HeaderField& f = fields_[i];
    const std::string where = "header field " + std::to_string(i + 1);
    if (!IsFieldName(f.name))
      return util::Err(util::ErrorCode::kInvalidArgument,
                       where + " has no valid name (printable US-ASCII before the colon)");
    const std::string key = FieldKey(f.name);
    const FieldCheck check = CheckField(f.name, f.value);
    if (check.reading == FieldReading::kBroken)
      return util::Err(util::ErrorCode::kInvalidArgument,
                       where + " (" + key + ") holds " + check.why +
                           ": the MTA writes it out as more lines than one field");
    if (key != "from") continue;
    ++from;
    // From is always signed (DMARC aligns with it), so it cannot be left out of h= instead.
    if (check.reading == FieldReading::kAmbiguous)
      return util::Err(util::ErrorCode::kInvalidArgument,
                       std::string("the From field holds ") + check.why +
                           ", which verifiers canonicalize differently; From must be signed");
  }
  if (from == 0) return util::Err(util::ErrorCode::kInvalidArgument, "no From header");
  if (from > 1)
    return util::Err(util::ErrorCode::kInvalidArgument, std::to_string(from) + " From headers");
  if (keys_.empty()) return util::Err(util::ErrorCode::kInvalidArgument, "no signing key");
  for (const auto& k : keys_) HasherFor(k->canonicalization().body);
  return util::Ok();
}

BodyHasher& MessageSigner::HasherFor(Canon mode) {
  auto& slot = hashers_[static_cast<int>(mode)];
  if (!slot) slot = std::make_unique<BodyHasher>(mode);
  return *slot;
}

void MessageSigner::AddBody(std::string_view chunk) {
  for (auto& h : hashers_)
    if (h) h->Update(chunk);
}

util::Result<std::vector<std::string>> MessageSigner::Finish() {
  RETURN_IF_ERROR(EndOfHeaders());
  std::optional<int64_t> expiration;
  if (options_.lifetime) {
    if (!options_.timestamp || *options_.lifetime <= 0 ||
        *options_.timestamp > INT64_MAX - *options_.lifetime)
      return util::Err(util::ErrorCode::kInvalidArgument,
                       "signature lifetime must be positive and needs a timestamp (x= > t=)");
    expiration = *options_.timestamp + *options_.lifetime;
  }
  std::string body_hash[2];
  for (int i = 0; i < 2; ++i)
    if (hashers_[i]) body_hash[i] = util::Base64Encode(internal::AsBytes(hashers_[i]->Finish()));

  const std::vector<std::string> names = selector_->SelectNames(fields_);
  const std::vector<const HeaderField*> signed_fields = CollectSignedFields(fields_, names);
  // The canonical signed fields are the same for every key with the same header algorithm.
  std::string canonical_fields[2];
  bool have_canonical[2] = {false, false};
  std::vector<std::string> out;
  out.reserve(keys_.size());
  std::string input;
  for (const auto& key : keys_) {
    const Canonicalization& canon = key->canonicalization();
    SignatureHeaderWriter::Tags tags;
    tags.algorithm = AlgorithmName(key->algorithm());
    tags.canonicalization = FormatCanonicalization(canon);
    tags.domain = key->domain();
    tags.selector = key->selector();
    tags.timestamp = options_.timestamp;
    tags.expiration = expiration;
    tags.headers = names;
    tags.body_hash = body_hash[static_cast<int>(canon.body)];
    SignatureHeaderWriter writer(tags);

    const int h = static_cast<int>(canon.header);
    if (!have_canonical[h]) {
      for (const HeaderField* f : signed_fields)
        AppendCanonicalHeader(canon.header, f->name, f->value, &canonical_fields[h]);
      have_canonical[h] = true;
    }
    input = canonical_fields[h];
    AppendSignatureField(canon.header, kDkimSignatureName, writer.unsigned_value(), &input);
    auto signature = key->key().Sign(internal::Sha256(input));
    if (!signature)
      return util::Err(signature.error().code, "signing with selector " + key->selector() + " of " +
                                                   key->domain() + ": " + signature.error().message);
    out.push_back(writer.Complete(util::Base64Encode(*signature)));
  }
  return out;
}

}  // namespace dkimrotor::signer

// The tag=value parser (RFC 6376 3.2) as the DKIM-Signature parser and the DNS key record
// check use it: the input is a tag list, tried as a DKIM-Signature value in the verifier and as
// a TXT key record against keys of both types.
#include <string>

#include "keystore/dns/key_record.h"
#include "signer/tag_list.h"
#include "signer/verifier.h"
#include "tests/fuzz/fuzz_input.h"

using namespace dkimrotor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = fuzz::AsText(data, size);

  if (auto tags = signer::TagList::Parse(text)) {
    for (const auto& [name, value] : tags->tags()) {
      auto got = tags->Get(name);
      FUZZ_CHECK(got.has_value() && *got == value, "a parsed tag cannot be looked up");
      const std::string stripped = signer::StripFws(value);
      FUZZ_CHECK(stripped.find_first_of(" \t\r\n") == std::string::npos, "StripFws left white space");
    }
  }

  (void)signer::RemoveSignatureValue(text);
  signer::MessageVerifier verifier([](std::string_view, std::string_view, signer::Algorithm)
                                       -> util::Result<std::shared_ptr<const signer::PublicKey>> {
    return util::Err(util::ErrorCode::kNotFound, "no keys in the fuzzer");
  });
  verifier.AddHeader({"DKIM-Signature", std::string(text)});
  verifier.AddHeader({"From", " a@example.com"});
  verifier.EndOfHeaders();
  verifier.AddBody("body\r\n");
  for (const auto& v : verifier.Finish())
    FUZZ_CHECK(!v.status.has_value(), "a signature verified without any key");

  // A record value as DNS would hold it: against an expected key of each type, and a revocation.
  for (auto alg : {signer::Algorithm::kRsaSha256, signer::Algorithm::kEd25519Sha256}) {
    for (std::string_view expected : {std::string_view("MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="),
                                      std::string_view()}) {
      auto check = keystore::CheckKeyRecord(text, alg, expected);
      FUZZ_CHECK(check.as_expected == check.detail.empty(), "a finding without a detail, or the reverse");
    }
  }
  std::string joined;
  for (const auto& s : keystore::SplitTxtStrings(text)) {
    FUZZ_CHECK(s.size() <= keystore::kMaxTxtStringBytes, "a TXT string over 255 bytes");
    joined += s;
  }
  FUZZ_CHECK(joined == text, "SplitTxtStrings lost or added bytes");
  return 0;
}

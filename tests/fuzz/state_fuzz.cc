// The keystore's state file loader: any file content gives keys or an error naming the file,
// never an exception; what it accepts, it writes back identically, and every selector and
// domain it accepts is a DNS name (no path can reach KeyPath()).
#include "keystore/storage/state_store.h"
#include "signer/signing_key.h"
#include "tests/fuzz/fuzz_input.h"

using namespace dkimrotor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto keys = keystore::StateFromJson(std::string(fuzz::AsText(data, size)), "state.json");
  if (!keys) {
    FUZZ_CHECK(keys.error().message.find("state.json") != std::string::npos,
               "a state error that does not name the file");
    return 0;
  }
  for (const auto& k : *keys) {
    FUZZ_CHECK(signer::ValidateDnsName(k.selector, "selector").has_value(), "a selector that is no DNS name");
    FUZZ_CHECK(signer::ValidateDnsName(k.domain, "domain").has_value(), "a domain that is no DNS name");
    (void)keystore::Rfc3339(k.created);
  }
  const std::string written = keystore::StateToJson(*keys);
  auto again = keystore::StateFromJson(written, "state.json");
  FUZZ_CHECK(again.has_value(), "the state written back cannot be read");
  FUZZ_CHECK(keystore::StateToJson(*again) == written, "the state does not round-trip");
  return 0;
}

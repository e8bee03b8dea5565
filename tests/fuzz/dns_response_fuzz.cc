// The DNS response parser: any bytes a server (or an attacker racing it) can send.
#include "keystore/dns/internal/ares_response.h"
#include "tests/fuzz/fuzz_input.h"

using namespace dkimrotor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto response = keystore::internal::ParseDnsResponse(fuzz::AsText(data, size));
  if (!response) return 0;
  for (uint16_t type : {16, 5, 2, 6, 1, 28}) {
    auto chain = keystore::internal::FollowAnswer(*response, "s._domainkey.example.com", type);
    for (const auto* rr : chain.records) FUZZ_CHECK(rr != nullptr && rr->type == type, "a record of another type");
  }
  if (!response->answers.empty())
    (void)keystore::internal::FollowAnswer(*response, response->answers.front().name, 16);
  return 0;
}

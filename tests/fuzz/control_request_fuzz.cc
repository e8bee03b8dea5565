// The control channel's request parser (what any local process that can connect may send) and
// the answer parser (what the CLI reads back).
#include "control/protocol.h"
#include "tests/fuzz/fuzz_input.h"

using namespace dkimrotor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = fuzz::AsText(data, size);
  if (auto request = control::ParseRequest(text)) {
    FUZZ_CHECK(text.size() <= control::kMaxRequestBytes, "an oversized request was accepted");
    auto again = control::ParseRequest(control::SerializeRequest(*request));
    FUZZ_CHECK(again.has_value(), "a request serialized back is refused");
    FUZZ_CHECK(again->command == request->command && again->domain == request->domain &&
                   again->selector == request->selector && again->force == request->force &&
                   again->pem == request->pem,
               "a request does not round-trip");
  }
  if (auto answer = control::ParseAnswer(text)) (void)control::SerializeAnswer(*answer);
  return 0;
}

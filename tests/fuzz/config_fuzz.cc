// The configuration loader, from a file as `run`, `check` and the reload read it: any text
// gives a Config or an error, never a crash or an escaping libconfig exception.
#include <unistd.h>

#include <string>

#include "conf/loader.h"
#include "tests/fuzz/fuzz_input.h"

using namespace dkimrotor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Never destroyed: the exit handler that removes the file runs after static destructors.
  static const std::string& path = *[] {
    char tmpl[] = "/tmp/dkimrotor-fuzz-conf-XXXXXX";
    int fd = ::mkstemp(tmpl);
    FUZZ_CHECK(fd >= 0, "mkstemp");
    ::close(fd);
    static const std::string* made = new std::string(tmpl);
    std::atexit([] { ::unlink(made->c_str()); });
    return made;
  }();
  // libconfig's @include would read other files (and "/dev/zero" forever): that is the
  // administrator's own choice, not hostile input, so the fuzzer leaves it out.
  const std::string_view text = fuzz::AsText(data, size);
  if (text.find("@include") != std::string_view::npos) return 0;
  FILE* f = std::fopen(path.c_str(), "wb");
  FUZZ_CHECK(f != nullptr, "cannot write the temporary config");
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  auto config = conf::LoadConfig(path);
  if (!config) FUZZ_CHECK(!config.error().message.empty(), "an error without a message");
  return 0;
}

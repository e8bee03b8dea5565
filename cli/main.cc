// dkimrotor: entry point; dispatches to the subcommands in cli/.
#include <cstdio>
#include <span>
#include <string_view>

#include "cli/commands.h"

namespace {

constexpr const char* kUsage =
    "usage: dkimrotor COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  sign    sign the message on stdin, write it signed on stdout\n"
    "\n"
    "Run 'dkimrotor COMMAND --help' for a command's options.\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace dkimrotor::cli;
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  std::string_view command = argv[1];
  std::span<char*> rest(argv + 2, static_cast<size_t>(argc - 2));
  if (command == "sign") return RunSign(rest);
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  std::fprintf(stderr, "dkimrotor: unknown command '%s'\n\n%s", argv[1], kUsage);
  return kExitUsage;
}

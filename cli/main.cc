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
    "  run     run the signing milter and the key rotation engine (the daemon)\n"
    "  sign    sign the message on stdin, write it signed on stdout\n"
    "  keys    list the keystore's keys and what happens next; keys import adds one\n"
    "  dns     print the DNS records of every key, as zone-file lines\n"
    "  check   check configuration, key files and DNS; exit 1 on any error\n"
    "  rotate  one rotation step now, or an emergency revocation (--emergency)\n"
    "  status  whether the daemon runs, its counters, and each domain's next step\n"
    "  audit   check DMARC aggregate reports against the key history\n"
    "  migrate turn an OpenDKIM configuration into dkimrotor's and import its keys\n"
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
  if (command == "run") return RunDaemon(rest);
  if (command == "sign") return RunSign(rest);
  if (command == "keys") return RunKeys(rest);
  if (command == "dns") return RunDns(rest);
  if (command == "check") return RunCheck(rest);
  if (command == "rotate") return RunRotate(rest);
  if (command == "status") return RunStatus(rest);
  if (command == "audit") return RunAudit(rest);
  if (command == "migrate") return RunMigrate(rest);
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  std::fprintf(stderr, "dkimrotor: unknown command '%s'\n\n%s", argv[1], kUsage);
  return kExitUsage;
}

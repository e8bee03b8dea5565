// `dkimrotor run` on an IPv4-only host: a network namespace with only lo up and IPv6 turned
// off, whose zone's name servers nevertheless have AAAA records (as most do). The daemon must
// start, its DNS checks must pass over IPv4 (keys become active and ready, no DNS problem
// recorded), and it must sign mail that dkimpy verifies. Skips when no namespace can be made.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keystore/storage/state_store.h"
#include "tests/faults/daemon_lab.h"

namespace dkimrotor::faults {
namespace {

using keystore::KeyState;
using keystore::testing::KnotServer;

bool Ipv6Usable() {
  const int s = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  const bool bound = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(s);
  return bound;
}

TEST(Ipv4OnlyHost, DaemonStartsChecksDnsOverIpv4AndSigns) {
  if (!KnotServer::Available()) GTEST_SKIP() << "knotd is not installed";
  auto rc = keystore::testing::RunInIpv4OnlyNamespace([] {
    EXPECT_FALSE(Ipv6Usable()) << "::1 is still usable: the namespace is not IPv4-only";
    DaemonLab::Options options;
    options.name_servers_ipv6 = {"2001:db8::53"};
    auto lab = DaemonLab::Create(options);
    EXPECT_TRUE(lab.has_value()) << lab.error().message;
    if (!lab) return 1;
    DaemonLab& l = **lab;
    auto up = l.StartDaemon();
    EXPECT_TRUE(up.has_value()) << up.error().message;
    if (!up) return 1;
    const bool settled = WaitFor(
        [&] {
          auto keys = keystore::LoadState(l.keystore());
          int active = 0, ready = 0;
          if (keys)
            for (const auto& k : *keys) {
              active += k.state == KeyState::kActive;
              ready += k.state == KeyState::kReady;
            }
          return active == 2 && ready == 2;
        },
        std::chrono::seconds(30));
    EXPECT_TRUE(settled) << "keys did not pass their DNS checks: " << l.LogTail();
    if (auto keys = keystore::LoadState(l.keystore())) {
      for (const auto& k : *keys) EXPECT_TRUE(k.dns_problem.empty()) << k.selector << ": " << k.dns_problem;
    }
    std::pair<std::string, int> signed_message;
    EXPECT_TRUE(WaitFor([&] {
      auto r = l.SignOne("ipv4 only");
      if (r) signed_message = *r;
      return r && r->second == 2;
    }, std::chrono::seconds(10))) << l.LogTail();
    EXPECT_EQ(l.VerifyFailure(signed_message.first, 2), "");
    auto stopped = l.StopDaemon();
    EXPECT_TRUE(stopped.has_value() && WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0) << l.LogTail();
    return ::testing::Test::HasFailure() ? 1 : 0;
  });
  if (!rc) GTEST_SKIP() << "no IPv4-only namespace here: " << rc.error().message;
  EXPECT_EQ(*rc, 0) << "the checks inside the namespace failed (see above)";
}

}  // namespace
}  // namespace dkimrotor::faults

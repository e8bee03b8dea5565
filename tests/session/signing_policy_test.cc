#include "session/signing_policy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>

namespace dkimrotor::session {
namespace {

sockaddr_storage V4(const char* ip) {
  sockaddr_storage s{};
  auto* a = reinterpret_cast<sockaddr_in*>(&s);
  a->sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a->sin_addr);
  return s;
}

sockaddr_storage V6(const char* ip) {
  sockaddr_storage s{};
  auto* a = reinterpret_cast<sockaddr_in6*>(&s);
  a->sin6_family = AF_INET6;
  inet_pton(AF_INET6, ip, &a->sin6_addr);
  return s;
}

const sockaddr* Sa(const sockaddr_storage& s) { return reinterpret_cast<const sockaddr*>(&s); }

std::vector<util::Cidr> Networks(std::initializer_list<const char*> texts) {
  std::vector<util::Cidr> out;
  for (const char* t : texts) out.push_back(util::Cidr::Parse(t).value());
  return out;
}

TEST(SigningPolicy, InternalNetworksByCidr) {
  auto p = SigningPolicy::Create(
      Networks({"127.0.0.1/32", "10.0.0.0/8", "192.168.1.0/25", "2001:db8::/32", "::1/128"}), false);
  ASSERT_TRUE(p.has_value()) << p.error().message;
  EXPECT_TRUE(p->IsInternal(Sa(V4("127.0.0.1"))));
  EXPECT_FALSE(p->IsInternal(Sa(V4("127.0.0.2"))));
  EXPECT_TRUE(p->IsInternal(Sa(V4("10.200.3.4"))));
  EXPECT_FALSE(p->IsInternal(Sa(V4("11.0.0.1"))));
  EXPECT_TRUE(p->IsInternal(Sa(V4("192.168.1.127"))));
  EXPECT_FALSE(p->IsInternal(Sa(V4("192.168.1.128"))));
  EXPECT_TRUE(p->IsInternal(Sa(V6("2001:db8:1::5"))));
  EXPECT_FALSE(p->IsInternal(Sa(V6("2001:db9::5"))));
  EXPECT_TRUE(p->IsInternal(Sa(V6("::1"))));
  // An IPv4 client seen through an IPv6 socket still matches the IPv4 network.
  EXPECT_TRUE(p->IsInternal(Sa(V6("::ffff:10.1.2.3"))));
  EXPECT_FALSE(p->IsInternal(Sa(V6("::ffff:8.8.8.8"))));
}

TEST(SigningPolicy, ExternalMailIsSignedOnlyAfterAuthWhenAllowed) {
  auto with_auth = SigningPolicy::Create(Networks({"127.0.0.1/32"}), true).value();
  auto without = SigningPolicy::Create(Networks({"127.0.0.1/32"}), false).value();
  const auto outside = V4("203.0.113.9");
  EXPECT_FALSE(with_auth.MaySign(Sa(outside), ""));
  EXPECT_TRUE(with_auth.MaySign(Sa(outside), "alice"));
  EXPECT_FALSE(without.MaySign(Sa(outside), "alice"));
  EXPECT_TRUE(without.MaySign(Sa(V4("127.0.0.1")), ""));
}

TEST(SigningPolicy, LocalSubmissionsAreInternal) {
  auto p = SigningPolicy::Create({}, false).value();
  EXPECT_TRUE(p.IsInternal(nullptr));
  sockaddr_storage s{};
  s.ss_family = AF_UNIX;
  EXPECT_TRUE(p.IsInternal(Sa(s)));
  EXPECT_FALSE(p.IsInternal(Sa(V4("127.0.0.1"))));  // no networks listed: none internal
}

TEST(SigningPolicy, OtherAddressFamiliesAreExternal) {
  auto p = SigningPolicy::Create(Networks({"0.0.0.0/0", "::/0"}), false).value();
  sockaddr_storage s{};
  s.ss_family = AF_UNSPEC;
  EXPECT_FALSE(p.IsInternal(Sa(s)));
}

}  // namespace
}  // namespace dkimrotor::session

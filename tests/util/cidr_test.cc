#include "util/cidr.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>

namespace dkimrotor::util {
namespace {

std::string Why(const Result<Cidr>& r) {
  return r.has_value() ? std::string("(accepted)") : r.error().message;
}

std::string Text(std::string_view s) {
  auto c = Cidr::Parse(s);
  return c ? c->ToString() : "error: " + c.error().message;
}

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

bool Contains(std::string_view network, const sockaddr_storage& s) {
  return Cidr::Parse(network).value().Contains(Sa(s));
}

TEST(Cidr, ParsesAndCanonicalizes) {
  EXPECT_EQ(Text("127.0.0.1/32"), "127.0.0.1/32");
  EXPECT_EQ(Text("10.0.0.0/8"), "10.0.0.0/8");
  EXPECT_EQ(Text("0.0.0.0/0"), "0.0.0.0/0");
  EXPECT_EQ(Text("192.0.2.7"), "192.0.2.7/32");
  EXPECT_EQ(Text("::1"), "::1/128");
  EXPECT_EQ(Text("2001:DB8:0:0::/32"), "2001:db8::/32");
  EXPECT_EQ(Text("fe80::/10"), "fe80::/10");
  EXPECT_EQ(Text("10.0.0.0/008"), "10.0.0.0/8");
  auto c = Cidr::Parse("192.0.2.0/24").value();
  EXPECT_EQ(c.family(), AF_INET);
  EXPECT_EQ(c.prefix(), 24);
  EXPECT_EQ(Cidr::Parse("2001:db8::/32").value().family(), AF_INET6);
}

TEST(Cidr, EqualityIsOnTheNetworkNotTheSpelling) {
  EXPECT_EQ(Cidr::Parse("2001:DB8::/32").value(), Cidr::Parse("2001:db8:0::/32").value());
  EXPECT_EQ(Cidr::Parse("192.0.2.7").value(), Cidr::Parse("192.0.2.7/32").value());
  EXPECT_FALSE(Cidr::Parse("10.0.0.0/8").value() == Cidr::Parse("10.0.0.0/16").value());
  // The same bits, another family: ::a00:0/104 is not 10.0.0.0/8.
  EXPECT_FALSE(Cidr::Parse("10.0.0.0/8").value() == Cidr::Parse("a00::/8").value());
}

TEST(Cidr, RejectsBadAddressesPrefixesAndHostBits) {
  EXPECT_EQ(Why(Cidr::Parse("10.0.0.1/8")),
            "the address has bits set beyond the /8 prefix: did you mean 10.0.0.0/8?");
  EXPECT_NE(Why(Cidr::Parse("192.0.2.130/25")).find("did you mean 192.0.2.128/25?"),
            std::string::npos);
  EXPECT_NE(Why(Cidr::Parse("2001:db8::1/32")).find("did you mean 2001:db8::/32?"),
            std::string::npos);
  EXPECT_EQ(Why(Cidr::Parse("10.0.0.0/33")),
            "prefix length '33' must be a number from 0 to 32 for an IPv4 address");
  EXPECT_EQ(Why(Cidr::Parse("::/129")),
            "prefix length '129' must be a number from 0 to 128 for an IPv6 address");
  EXPECT_NE(Why(Cidr::Parse("10.0.0.0/")).find("prefix length"), std::string::npos);
  EXPECT_NE(Why(Cidr::Parse("10.0.0.0/-1")).find("prefix length"), std::string::npos);
  EXPECT_NE(Why(Cidr::Parse("10.0.0.0/x")).find("prefix length 'x'"), std::string::npos);
  EXPECT_NE(Why(Cidr::Parse("10.0.0.0/8/8")).find("prefix length '8/8'"), std::string::npos);
  EXPECT_NE(Why(Cidr::Parse("10.0.0.256/32")).find("not an IPv4 or IPv6"), std::string::npos);
  EXPECT_NE(Why(Cidr::Parse("10.0/16")).find("not an IPv4 or IPv6"), std::string::npos);
  EXPECT_EQ(Why(Cidr::Parse("mail.example.com")),
            "'mail.example.com' is a host name; write a network as ADDRESS/PREFIX, e.g. "
            "192.0.2.0/24");
  EXPECT_NE(Why(Cidr::Parse("example.com/8")).find("host name"), std::string::npos);
  EXPECT_FALSE(Cidr::Parse("").has_value());
}

TEST(Cidr, ContainsByPrefix) {
  EXPECT_TRUE(Contains("127.0.0.1/32", V4("127.0.0.1")));
  EXPECT_FALSE(Contains("127.0.0.1/32", V4("127.0.0.2")));
  EXPECT_TRUE(Contains("10.0.0.0/8", V4("10.200.3.4")));
  EXPECT_FALSE(Contains("10.0.0.0/8", V4("11.0.0.1")));
  EXPECT_TRUE(Contains("192.168.1.0/25", V4("192.168.1.127")));
  EXPECT_FALSE(Contains("192.168.1.0/25", V4("192.168.1.128")));
  EXPECT_TRUE(Contains("0.0.0.0/0", V4("203.0.113.9")));
  EXPECT_TRUE(Contains("2001:db8::/32", V6("2001:db8:1::5")));
  EXPECT_FALSE(Contains("2001:db8::/32", V6("2001:db9::5")));
  EXPECT_TRUE(Contains("fe80::/10", V6("febf::1")));
  EXPECT_FALSE(Contains("fe80::/10", V6("fec0::1")));
  EXPECT_TRUE(Contains("::1/128", V6("::1")));
  EXPECT_TRUE(Contains("::/0", V6("2001:db8::1")));
}

TEST(Cidr, IpV4MappedAddressesMatchIpV4Networks) {
  EXPECT_TRUE(Contains("10.0.0.0/8", V6("::ffff:10.1.2.3")));
  EXPECT_FALSE(Contains("10.0.0.0/8", V6("::ffff:8.8.8.8")));
  EXPECT_TRUE(Contains("::ffff:0:0/96", V4("8.8.8.8")));
  // IPv4 clients are compared as ::ffff:a.b.c.d, so an IPv6 network matches them only if it
  // covers that range.
  EXPECT_FALSE(Contains("2001:db8::/32", V4("32.1.13.184")));
  EXPECT_TRUE(Contains("::/8", V4("192.0.2.1")));
  EXPECT_FALSE(Contains("0.0.0.0/0", V6("::1")));
}

TEST(Cidr, OtherFamiliesAndNullAreOutside) {
  auto any = Cidr::Parse("0.0.0.0/0").value();
  EXPECT_FALSE(any.Contains(nullptr));
  sockaddr_storage s{};
  s.ss_family = AF_UNIX;
  EXPECT_FALSE(any.Contains(Sa(s)));
}

}  // namespace
}  // namespace dkimrotor::util

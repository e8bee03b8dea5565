#include "util/server_address.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

namespace dkimrotor::util {
namespace {

std::string Why(const Result<ServerAddress>& r) {
  return r.has_value() ? std::string("(accepted)") : r.error().message;
}

// "FAMILY IP PORT" of what `text` parses to, or the error.
std::string Parsed(std::string_view text, uint16_t default_port = 53) {
  auto a = ServerAddress::Parse(text, default_port);
  if (!a) return "error: " + a.error().message;
  return std::string(a->family == AF_INET ? "v4 " : a->family == AF_INET6 ? "v6 " : "? ") + a->ip +
         " " + std::to_string(a->port);
}

TEST(ServerAddress, ParsesAddressesWithAndWithoutPorts) {
  EXPECT_EQ(Parsed("127.0.0.1"), "v4 127.0.0.1 53");
  EXPECT_EQ(Parsed("127.0.0.1", 5300), "v4 127.0.0.1 5300");
  EXPECT_EQ(Parsed("127.0.0.1:5353"), "v4 127.0.0.1 5353");
  EXPECT_EQ(Parsed("192.0.2.1:65535"), "v4 192.0.2.1 65535");
  EXPECT_EQ(Parsed("::1"), "v6 ::1 53");
  EXPECT_EQ(Parsed("[::1]"), "v6 ::1 53");
  EXPECT_EQ(Parsed("[::1]:53"), "v6 ::1 53");
  EXPECT_EQ(Parsed("[2001:db8::53]:5353"), "v6 2001:db8::53 5353");
  EXPECT_EQ(Parsed("2001:db8::53"), "v6 2001:db8::53 53");
  // Stored canonical, so equal addresses compare equal however they were written.
  EXPECT_EQ(Parsed("[2001:DB8:0::1]:053"), "v6 2001:db8::1 53");
}

TEST(ServerAddress, ToStringReadsBackAsTheSameAddress) {
  for (const char* text : {"127.0.0.1", "127.0.0.1:5353", "::1", "[2001:db8::1]:5353"}) {
    auto a = ServerAddress::Parse(text, 53).value();
    EXPECT_EQ(ServerAddress::Parse(a.ToString(), 1).value(), a) << text;
  }
  EXPECT_EQ(ServerAddress::Parse("192.0.2.1", 53)->ToString(), "192.0.2.1:53");
  EXPECT_EQ(ServerAddress::Parse("2001:db8::1", 53)->ToString(), "[2001:db8::1]:53");
}

TEST(ServerAddress, RejectsNamesBadPortsAndStrayBrackets) {
  EXPECT_EQ(Why(ServerAddress::Parse("dns.google", 53)),
            "'dns.google' is not an IP address (resolvers are addresses, not names); write an "
            "address: \"IP\", \"IPv4:PORT\" or \"[IPv6]:PORT\" (e.g. \"127.0.0.1:5353\", "
            "\"[::1]:53\")");
  EXPECT_NE(Why(ServerAddress::Parse("dns.google:53", 53)).find("'dns.google' is not an IP"),
            std::string::npos);
  EXPECT_NE(Why(ServerAddress::Parse("1.2.3:53", 53)).find("'1.2.3' is not an IP"),
            std::string::npos);
  EXPECT_EQ(Why(ServerAddress::Parse("127.0.0.1:0", 53)),
            "port '0' is not a number from 1 to 65535");
  EXPECT_NE(Why(ServerAddress::Parse("1.2.3.4:99999", 53)).find("1 to 65535"),
            std::string::npos);
  EXPECT_NE(Why(ServerAddress::Parse("1.2.3.4:+53", 53)).find("1 to 65535"), std::string::npos);
  EXPECT_NE(Why(ServerAddress::Parse("127.0.0.1:", 53)).find("port ''"), std::string::npos);
  EXPECT_NE(Why(ServerAddress::Parse("[::1]:", 53)).find("port ''"), std::string::npos);
  EXPECT_EQ(Why(ServerAddress::Parse("[127.0.0.1]:53", 53)),
            "brackets are for IPv6 addresses: write 127.0.0.1:53");
  EXPECT_EQ(Why(ServerAddress::Parse("[::1:53", 53)), "'[' lacks its closing ']'");
  EXPECT_NE(Why(ServerAddress::Parse("[::1]53", 53)).find("[IPv6]:PORT"), std::string::npos);
  EXPECT_NE(Why(ServerAddress::Parse("[::1]x", 53)).find("[IPv6]:PORT"), std::string::npos);
  EXPECT_EQ(Why(ServerAddress::Parse("[example.com]:53", 53)),
            "'example.com' is not an IPv6 address");
  EXPECT_EQ(Why(ServerAddress::Parse("2001:db8::zz:53", 53)),
            "not an IPv6 address; with a port, write it as [IPv6]:PORT");
  EXPECT_NE(Why(ServerAddress::Parse("", 53)).find("empty"), std::string::npos);
}

}  // namespace
}  // namespace dkimrotor::util

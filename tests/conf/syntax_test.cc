#include "conf/internal/syntax.h"

#include <gtest/gtest.h>

namespace dkimrotor::conf::internal {
namespace {

template <class T>
std::string Why(const util::Result<T>& r) {
  return r.has_value() ? std::string("(accepted)") : r.error().message;
}

TEST(CheckMilterSocket, AcceptsLibmilterForms) {
  for (const char* ok : {"inet:8891@127.0.0.1", "inet:8891@localhost", "inet:8891",
                         "inet:8891@[127.0.0.1]", "inet6:8891@::1", "inet6:8891@[::1]",
                         "inet6:65535@mail.example.com", "unix:/run/dkimrotor/milter.sock",
                         "local:/var/spool/postfix/dkimrotor/dkimrotor.sock"}) {
    EXPECT_TRUE(CheckMilterSocket(ok).has_value()) << ok << ": " << Why(CheckMilterSocket(ok));
  }
}

TEST(CheckMilterSocket, RejectsWithTheFix) {
  EXPECT_NE(Why(CheckMilterSocket("inet:0@127.0.0.1")).find("1 to 65535"), std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("inet:65536@127.0.0.1")).find("1 to 65535"), std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("inet:smtp@127.0.0.1")).find("port 'smtp'"), std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("inet:8891@::1")).find("use inet6:8891@::1"), std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("inet6:8891@127.0.0.1")).find("use inet:8891@127.0.0.1"),
            std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("inet:8891@")).find("host after '@' is missing"),
            std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("inet:8891@[::1")).find("closing ']'"), std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("inet:8891@bad_host")).find("neither"), std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("unix:run/x.sock")).find("absolute"), std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("unix:/" + std::string(200, 'a'))).find("shorter than"),
            std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("/run/x.sock")).find("\"unix:/run/x.sock\""), std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("INET:8891")).find("lowercase"), std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("tcp:8891")).find("unknown protocol 'tcp'"), std::string::npos);
  EXPECT_NE(Why(CheckMilterSocket("8891")).find("inet:PORT@HOST"), std::string::npos);
}

TEST(NormalizeDomainName, LowercasesValidNames) {
  EXPECT_EQ(NormalizeDomainName("Example.COM").value(), "example.com");
  EXPECT_EQ(NormalizeDomainName("mail-1.example.co.uk").value(), "mail-1.example.co.uk");
  EXPECT_EQ(NormalizeDomainName("xn--bcher-kva.example").value(), "xn--bcher-kva.example");
}

TEST(NormalizeDomainName, RejectsNonLdhNames) {
  EXPECT_NE(Why(NormalizeDomainName("example.com.")).find("\"example.com\""), std::string::npos);
  EXPECT_NE(Why(NormalizeDomainName("localhost")).find("fully qualified"), std::string::npos);
  EXPECT_NE(Why(NormalizeDomainName("ex_ample.com")).find("'_'"), std::string::npos);
  EXPECT_NE(Why(NormalizeDomainName("-example.com")).find("starts or ends with '-'"),
            std::string::npos);
  EXPECT_NE(Why(NormalizeDomainName("example..com")).find("empty label"), std::string::npos);
  EXPECT_NE(Why(NormalizeDomainName(std::string(64, 'a') + ".com")).find("63"), std::string::npos);
  std::string long_name;
  for (int i = 0; i < 51; ++i) long_name += "abcd.";
  EXPECT_NE(Why(NormalizeDomainName(long_name + "com")).find("253"), std::string::npos);
  EXPECT_FALSE(NormalizeDomainName("").has_value());
}

TEST(CheckStream, AllowsLdhAndDots) {
  EXPECT_TRUE(CheckStream("mta1").has_value());
  EXPECT_TRUE(CheckStream("news.mta-2").has_value());
  EXPECT_NE(Why(CheckStream("mta_1")).find("'_'"), std::string::npos);
  EXPECT_NE(Why(CheckStream("mta{1}")).find("'{'"), std::string::npos);
}

TEST(CheckSelector, EnforcesDnsLimits) {
  EXPECT_TRUE(CheckSelector("mta1-20260131-rsa2048", "example.com").has_value());
  EXPECT_NE(Why(CheckSelector("-20260131-rsa2048", "example.com")).find("starts or ends"),
            std::string::npos);
  EXPECT_NE(Why(CheckSelector(std::string(64, 'a'), "example.com")).find("63"),
            std::string::npos);
  std::string selector;
  for (int i = 0; i < 48; ++i) selector += "abcd.";
  EXPECT_NE(Why(CheckSelector(selector + "x", "example.com")).find("over DNS's 253"),
            std::string::npos);
}

TEST(ParseSocketMode, ReadsOctal) {
  EXPECT_EQ(ParseSocketMode("0660").value(), 0660u);
  EXPECT_EQ(ParseSocketMode("660").value(), 0660u);
  EXPECT_EQ(ParseSocketMode("0777").value(), 0777u);
  EXPECT_EQ(ParseSocketMode("0000").value(), 0u);
  EXPECT_NE(Why(ParseSocketMode("0680")).find("octal"), std::string::npos);
  EXPECT_NE(Why(ParseSocketMode("rw-rw----")).find("octal"), std::string::npos);
  EXPECT_NE(Why(ParseSocketMode("60")).find("octal"), std::string::npos);
  EXPECT_NE(Why(ParseSocketMode("4660")).find("setuid"), std::string::npos);
}

TEST(NormalizeHeaderName, LowercasesAndAllowsPrefixes) {
  EXPECT_EQ(NormalizeHeaderName("Message-ID").value(), "message-id");
  EXPECT_EQ(NormalizeHeaderName("List-*").value(), "list-*");
  EXPECT_NE(Why(NormalizeHeaderName("*")).find("every header"), std::string::npos);
  EXPECT_NE(Why(NormalizeHeaderName("From:")).find("\"From\""), std::string::npos);
  EXPECT_NE(Why(NormalizeHeaderName("li*st")).find("only end"), std::string::npos);
  EXPECT_NE(Why(NormalizeHeaderName("reply to")).find("printable"), std::string::npos);
  EXPECT_FALSE(NormalizeHeaderName("").has_value());
}

TEST(CheckAccountName, AcceptsNamesAndNumbers) {
  EXPECT_TRUE(CheckAccountName("dkimrotor").has_value());
  EXPECT_TRUE(CheckAccountName("_dkim.rotor-1").has_value());
  EXPECT_TRUE(CheckAccountName("110").has_value());
  EXPECT_FALSE(CheckAccountName("-x").has_value());
  EXPECT_FALSE(CheckAccountName("a b").has_value());
  EXPECT_FALSE(CheckAccountName(std::string(33, 'a')).has_value());
}

TEST(CheckAbsolutePath, RequiresLeadingSlash) {
  EXPECT_TRUE(CheckAbsolutePath("/usr/lib/x").has_value());
  EXPECT_FALSE(CheckAbsolutePath("hooks/x").has_value());
  EXPECT_FALSE(CheckAbsolutePath("").has_value());
}

TEST(ClosestMatch, FindsTyposOnly) {
  std::vector<std::string_view> names = {"internal_hosts", "sign_authenticated", "headers"};
  EXPECT_EQ(ClosestMatch("intrenal_hosts", names), "internal_hosts");
  EXPECT_EQ(ClosestMatch("internal_host", names), "internal_hosts");
  EXPECT_EQ(ClosestMatch("header", names), "headers");
  EXPECT_EQ(ClosestMatch("Headers", names), "headers");
  EXPECT_EQ(ClosestMatch("canonicalization", names), "");
  EXPECT_EQ(ClosestMatch("x", names), "");
}

}  // namespace
}  // namespace dkimrotor::conf::internal

#include "conf/loader.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "conf/practices.h"
#include "util/file.h"

namespace dkimrotor::conf {
namespace {

using std::chrono::seconds;

constexpr char kSource[] = "test.conf";

// The error ParseConfig gives for `text`, which must not parse.
std::string ErrorOf(std::string_view text) {
  util::Result<Config> r = ParseConfig(text, kSource);
  EXPECT_FALSE(r.has_value()) << "parsed:\n" << text;
  if (r.has_value()) return "";
  EXPECT_EQ(r.error().code, util::ErrorCode::kInvalidArgument);
  return r.error().message;
}

// `setting` on line 3 of a file with one domain entry.
std::string DomainWith(std::string_view setting) {
  return "domains = (\n"
         "  { domain = \"example.com\"; stream = \"mta1\";\n"
         "    " + std::string(setting) + "\n"
         "  } );\n";
}

constexpr char kFullExample[] = R"(# every setting, none at its default
milter: {
  socket = "unix:/var/spool/postfix/dkimrotor/dkimrotor.sock";
  on_error = "accept";
  on_bad_message = "reject";
  user = "dkimrotor";
  group = "postfix";
  socket_mode = "0600";
  stop_timeout = "2m";
};
signing: {
  internal_hosts = ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"];
  sign_authenticated = false;
  canonicalization = "relaxed/simple";
  headers = ["From", "Subject", "List-*"];
  oversign = [];
  signature_lifetime = "7d";
  max_header_fields = 2000;
  max_header_bytes = 262144;
};
keystore: { directory = "/srv/dkim"; };
dns: {
  resolvers = ["127.0.0.1:5353", "[::1]:53", "192.0.2.53"];
  check_authoritative = false;
  authoritative_port = 5300;
  min_propagation = "2h";
  poll = "30s";
  timeout = "3s";
};
log: { target = "syslog"; level = "debug"; audit = "/var/log/dkimrotor-audit.log"; };
domains = (
  { domain = "Example.com"; stream = "mta1";
    algorithms = ["rsa-sha256", "ed25519-sha256"];
    bits = 3072;
    active_keys = 3;
    key_lifetime = "90d";
    prepublish = 2;
    grace = "3w";
    selector_format = "{stream}-{yyyymm}-{alg}{bits}";
    publish_hook = "/usr/lib/dkimrotor/hooks/nsupdate";
    hook_timeout = "1m";
    subdomains = true; },
  { domain = "example.org"; selector_format = "k{n}"; }
);
)";

// Found by config_fuzz: a file cut off after a string made libconfig leak its scanner buffer
// (suppressed for LeakSanitizer in tests/lsan.supp: libconfig's, not ours). It must stay an
// error that names the file, whatever libconfig does inside.
TEST(LoadConfig, FuzzedUnterminatedFileIsAnErrorNamingTheFile) {
  const std::string path = std::string(DKIMROTOR_FUZZ_CORPUS) + "/config/unterminated-string.conf";
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  auto config = LoadConfig(path);
  ASSERT_FALSE(config.has_value());
  EXPECT_NE(config.error().message.find(path), std::string::npos) << config.error().message;
}

// Found by config_fuzz: an empty string where libconfig expects a `;` (`socket_mode = 0 "";`)
// makes libconfig's scanner leak the string's one byte (also suppressed in tests/lsan.supp).
// It must be an error naming the file and the line.
TEST(LoadConfig, FuzzedEmptyStringAfterAValueIsAnErrorNamingFileAndLine) {
  const std::string path =
      std::string(DKIMROTOR_FUZZ_CORPUS) + "/config/empty-string-after-value.conf";
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  auto config = LoadConfig(path);
  ASSERT_FALSE(config.has_value());
  EXPECT_NE(config.error().message.find(path + ":1"), std::string::npos) << config.error().message;
}

TEST(ParseConfig, FullExampleParsesToItsValues) {
  util::Result<Config> r = ParseConfig(kFullExample, kSource);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const Config& c = *r;

  EXPECT_EQ(c.milter.socket, "unix:/var/spool/postfix/dkimrotor/dkimrotor.sock");
  EXPECT_EQ(c.milter.on_error, OnError::kAccept);
  EXPECT_EQ(c.milter.on_bad_message, OnBadMessage::kReject);
  EXPECT_EQ(c.milter.user, "dkimrotor");
  EXPECT_EQ(c.milter.group, "postfix");
  EXPECT_EQ(c.milter.socket_mode, 0600u);
  EXPECT_EQ(c.milter.stop_timeout, std::chrono::minutes(2));

  std::vector<std::string> hosts;
  for (const auto& h : c.signing.internal_hosts) hosts.push_back(h.ToString());
  EXPECT_EQ(hosts, (std::vector<std::string>{"192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32"}));
  EXPECT_FALSE(c.signing.sign_authenticated);
  EXPECT_EQ(c.signing.canonicalization,
            (signer::Canonicalization{signer::Canon::kRelaxed, signer::Canon::kSimple}));
  EXPECT_EQ(c.signing.headers, (std::vector<std::string>{"from", "subject", "list-*"}));
  EXPECT_TRUE(c.signing.oversign.empty());
  EXPECT_EQ(c.signing.signature_lifetime, seconds(7 * 86400));
  EXPECT_EQ(c.signing.max_header_fields, 2000);
  EXPECT_EQ(c.signing.max_header_bytes, 262144);

  EXPECT_EQ(c.keystore.directory, "/srv/dkim");

  std::vector<std::string> resolvers;
  for (const auto& r : c.dns.resolvers) resolvers.push_back(r.ToString());
  EXPECT_EQ(resolvers, (std::vector<std::string>{"127.0.0.1:5353", "[::1]:53", "192.0.2.53:53"}));
  EXPECT_FALSE(c.dns.check_authoritative);
  EXPECT_EQ(c.dns.authoritative_port, 5300);
  EXPECT_EQ(c.dns.min_propagation, seconds(7200));
  EXPECT_EQ(c.dns.poll, seconds(30));
  EXPECT_EQ(c.dns.timeout, seconds(3));

  EXPECT_EQ(c.log.target, LogTarget::kSyslog);
  EXPECT_EQ(c.log.level, LogLevel::kDebug);
  EXPECT_EQ(c.log.audit, "/var/log/dkimrotor-audit.log");

  ASSERT_EQ(c.domains.size(), 2u);
  const DomainConfig& d = c.domains[0];
  EXPECT_EQ(d.domain, "example.com");
  EXPECT_EQ(d.stream, "mta1");
  EXPECT_EQ(d.algorithms, (std::vector<signer::Algorithm>{signer::Algorithm::kRsaSha256,
                                                           signer::Algorithm::kEd25519Sha256}));
  EXPECT_EQ(d.bits, 3072);
  EXPECT_EQ(d.active_keys, 3);
  EXPECT_EQ(d.key_lifetime, seconds(90 * 86400));
  EXPECT_EQ(d.prepublish, 2);
  EXPECT_EQ(d.grace, seconds(21 * 86400));
  EXPECT_EQ(d.selector_format.text(), "{stream}-{yyyymm}-{alg}{bits}");
  EXPECT_EQ(d.publish_hook, "/usr/lib/dkimrotor/hooks/nsupdate");
  EXPECT_EQ(d.hook_timeout, seconds(60));
  EXPECT_TRUE(d.subdomains);

  // An entry that sets little gets the defaults for the rest.
  DomainConfig expected;
  expected.domain = "example.org";
  expected.selector_format = signer::SelectorFormat::Parse("k{n}").value();
  EXPECT_EQ(c.domains[1], expected);
}

TEST(ParseConfig, EmptyTextGivesTheDefaults) {
  util::Result<Config> r = ParseConfig("", kSource);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Config{});
  r = ParseConfig("# only a comment\nmilter: {};\nsigning: {};\ndomains = ();\n", kSource);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Config{});
}

TEST(ParseConfig, MetricsListenTakesAnAddressAndPortOrNothing) {
  auto r = ParseConfig("metrics: { listen = \"127.0.0.1:9100\"; };", kSource);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  ASSERT_TRUE(r->metrics.listen.has_value());
  EXPECT_EQ(r->metrics.listen->ToString(), "127.0.0.1:9100");
  r = ParseConfig("metrics: { listen = \"[::1]:9795\"; };", kSource);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->metrics.listen->ToString(), "[::1]:9795");
  r = ParseConfig("metrics: { listen = \"\"; };", kSource);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_FALSE(r->metrics.listen.has_value());
}

TEST(ParseConfig, EmptyListsMeanNone) {
  util::Result<Config> r =
      ParseConfig("signing: { internal_hosts = []; headers = (); };\ndomains = [];\n", kSource);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(r->signing.internal_hosts.empty());
  EXPECT_TRUE(r->signing.headers.empty());
  EXPECT_TRUE(r->domains.empty());
}

TEST(ParseConfig, AcceptsSixtyFourBitIntegers) {
  util::Result<Config> r = ParseConfig(DomainWith("bits = 4096L;"), kSource);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->domains[0].bits, 4096);
}

TEST(ParseConfig, ErrorNamesFileLineSettingValueAndRange) {
  EXPECT_EQ(ErrorOf(DomainWith("active_keys = 5;")),
            "test.conf:3: domains.[0].active_keys = 5: must be 1 to 3");
}

TEST(ParseConfig, UnknownSettingIsAnErrorWithASuggestion) {
  EXPECT_EQ(ErrorOf("signing: {\n  intrenal_hosts = [\"10.0.0.0/8\"];\n};\n"),
            "test.conf:2: unknown setting 'signing.intrenal_hosts': did you mean "
            "'signing.internal_hosts'?");
  EXPECT_EQ(ErrorOf("miltr: { };"), "test.conf:1: unknown setting 'miltr': did you mean 'milter'?");
  EXPECT_EQ(ErrorOf(DomainWith("bitz = 2048;")),
            "test.conf:3: unknown setting 'domains.[0].bitz': did you mean 'domains.[0].bits'?");
  EXPECT_NE(ErrorOf("log: { colour = true; };").find("remove it; the known settings here are "
                                                     "\"target\", \"level\" or \"audit\""),
            std::string::npos);
}

TEST(ParseConfig, SettingInTheWrongSectionSaysWhereItBelongs) {
  EXPECT_EQ(ErrorOf("signing: { resolvers = [\"127.0.0.1\"]; };"),
            "test.conf:1: unknown setting 'signing.resolvers': it belongs in the dns section");
  EXPECT_EQ(ErrorOf("\ndomain = \"example.com\";"),
            "test.conf:2: unknown setting 'domain': it belongs in an entry of "
            "domains = ( { ... } )");
  EXPECT_EQ(ErrorOf("socket = \"inet:8891\";"),
            "test.conf:1: unknown setting 'socket': it belongs in the milter section");
}

TEST(ParseConfig, SyntaxErrorNamesTheLine) {
  EXPECT_EQ(ErrorOf("milter: {\n  socket =\n  on_error = \"accept\";\n};"),
            "test.conf:3: syntax error: check this line and the one before it for a missing "
            "value, '=', quote or bracket");
  EXPECT_EQ(ErrorOf("log: {\n  level = \"info;\n};\n"),
            "test.conf:2: syntax error: the string opened on this line is not closed on it (the "
            "parser gave up at line 4)");
  // Quotes in comments and escaped quotes do not count.
  EXPECT_EQ(ErrorOf("# \"\nlog: { audit = \"/a\\\"b\"; /* \" */ level = ; };\n"),
            "test.conf:2: syntax error: check this line and the one before it for a missing "
            "value, '=', quote or bracket");
  EXPECT_EQ(ErrorOf("log: { level = \"info\";\n level = \"debug\"; };"),
            "test.conf:2: this setting appears twice in its section: keep one");
}

TEST(ParseConfig, WrongTypeNamesTheExpectedType) {
  EXPECT_EQ(ErrorOf("milter: { socket = 8891; };"),
            "test.conf:1: milter.socket = 8891: expected a string in double quotes");
  EXPECT_EQ(ErrorOf(DomainWith("bits = \"2048\";")),
            "test.conf:3: domains.[0].bits = \"2048\": expected a whole number, without quotes");
  EXPECT_EQ(ErrorOf(DomainWith("bits = 2048.0;")),
            "test.conf:3: domains.[0].bits = 2048: expected a whole number, without quotes");
  EXPECT_EQ(ErrorOf("signing: { sign_authenticated = \"yes\"; };"),
            "test.conf:1: signing.sign_authenticated = \"yes\": expected true or false, without "
            "quotes");
  EXPECT_NE(ErrorOf("milter: { socket_mode = 0660; };")
                .find("milter.socket_mode = 660: expected a string: write it in double quotes, "
                      "as \"0660\""),
            std::string::npos);
  EXPECT_NE(ErrorOf("dns: { poll = 60; };").find("dns.poll = 60: expected a duration"),
            std::string::npos);
  EXPECT_NE(ErrorOf("milter = \"inet:8891\";").find("milter = \"inet:8891\": expected a group"),
            std::string::npos);
  EXPECT_NE(ErrorOf(DomainWith("algorithms = \"rsa-sha256\";"))
                .find("domains.[0].algorithms = \"rsa-sha256\": expected a list of strings"),
            std::string::npos);
  EXPECT_NE(ErrorOf("signing: { internal_hosts = [\"127.0.0.1\", 5]; };"), "");
  EXPECT_NE(ErrorOf("signing: { internal_hosts = (\"127.0.0.1\", 5); };")
                .find("signing.internal_hosts.[1] = 5: expected a string"),
            std::string::npos);
  EXPECT_NE(ErrorOf("domains = { domain = \"example.com\"; };")
                .find("domains = { ... }: expected a list of groups in parentheses"),
            std::string::npos);
  EXPECT_NE(ErrorOf("domains = ( \"example.com\" );")
                .find("domains.[0] = \"example.com\": expected a group in braces"),
            std::string::npos);
}

// Each validation, as the exact error of a one-line section or of line 3 of a domain entry.
TEST(ParseConfig, ValidatesEverySetting) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"milter: { socket = \"inet:99999@127.0.0.1\"; };",
       "test.conf:1: milter.socket = \"inet:99999@127.0.0.1\": port '99999' is not a number from "
       "1 to 65535"},
      {"milter: { socket = \"unix:run/milter.sock\"; };",
       "test.conf:1: milter.socket = \"unix:run/milter.sock\": the socket path must be absolute, "
       "e.g. \"unix:/run/dkimrotor/dkimrotor.sock\""},
      {"milter: { on_error = \"reject\"; };",
       "test.conf:1: milter.on_error = \"reject\": must be \"tempfail\" or \"accept\""},
      {"milter: { on_bad_message = \"rejct\"; };",
       "test.conf:1: milter.on_bad_message = \"rejct\": must be \"accept\", \"reject\" or "
       "\"tempfail\" (did you mean \"reject\"?)"},
      {"milter: { user = \"-x\"; };",
       "test.conf:1: milter.user = \"-x\": not a valid user or group name (letters, digits, '.', "
       "'_', '-', at most 32 characters, not starting with '-') or number"},
      {"milter: { socket_mode = \"0860\"; };",
       "test.conf:1: milter.socket_mode = \"0860\": must be octal permission bits such as "
       "\"0660\" (owner and group read-write)"},
      {"signing: { internal_hosts = [\"127.0.0.1/32\", \"10.0.0.1/8\"]; };",
       "test.conf:1: signing.internal_hosts.[1] = \"10.0.0.1/8\": the address has bits set "
       "beyond the /8 prefix: did you mean 10.0.0.0/8?"},
      {"signing: { internal_hosts = [\"::1/129\"]; };",
       "test.conf:1: signing.internal_hosts.[0] = \"::1/129\": prefix length '129' must be a "
       "number from 0 to 128 for an IPv6 address"},
      {"signing: { canonicalization = \"relaxed\"; };",
       "test.conf:1: signing.canonicalization = \"relaxed\": name both header and body "
       "canonicalization: \"relaxed/relaxed\"; \"relaxed/relaxed\" survives most relays"},
      {"signing: { canonicalization = \"Relaxed/Relaxed\"; };",
       "test.conf:1: signing.canonicalization = \"Relaxed/Relaxed\": must be \"relaxed/relaxed\", "
       "\"relaxed/simple\", \"simple/relaxed\" or \"simple/simple\" (header/body)"},
      {"signing: { canonicalization = \"loose/loose\"; };",
       "test.conf:1: signing.canonicalization = \"loose/loose\": must be \"relaxed/relaxed\", "
       "\"relaxed/simple\", \"simple/relaxed\" or \"simple/simple\" (header/body)"},
      {"signing: { oversign = [\"From:\"]; };",
       "test.conf:1: signing.oversign.[0] = \"From:\": write the field name without the colon: "
       "\"From\""},
      {"signing: { signature_lifetime = \"1h30m\"; };",
       "test.conf:1: signing.signature_lifetime = \"1h30m\": \"1h30m\" is not a duration: use "
       "one number and one unit: write \"90m\"; allowed: 0s to 366d"},
      {"keystore: { directory = \"var/lib/dkimrotor\"; };",
       "test.conf:1: keystore.directory = \"var/lib/dkimrotor\": must be an absolute path, "
       "starting with '/'"},
      {"dns: { resolvers = [\"dns.google\"]; };",
       "test.conf:1: dns.resolvers.[0] = \"dns.google\": 'dns.google' is not an IP address "
       "(resolvers are addresses, not names); write an address: \"IP\", \"IPv4:PORT\" or "
       "\"[IPv6]:PORT\" (e.g. \"127.0.0.1:5353\", \"[::1]:53\")"},
      {"dns: { poll = \"0s\"; };", "test.conf:1: dns.poll = \"0s\": must be from 1s to 1d"},
      // Issue 13: accepted before, and its conversion to a steady_clock deadline overflowed.
      {"dns: { poll = \"15250284453w\"; };",
       "test.conf:1: dns.poll = \"15250284453w\": \"15250284453w\" is not a duration: it is too "
       "large: at most 5218w (about 100 years); allowed: 1s to 1d"},
      {"dns: { poll = \"2d\"; };", "test.conf:1: dns.poll = \"2d\": must be from 1s to 1d"},
      {"dns: { timeout = \"6m\"; };", "test.conf:1: dns.timeout = \"6m\": must be from 1s to 5m"},
      {"dns: { min_propagation = \"8d\"; };",
       "test.conf:1: dns.min_propagation = \"8d\": must be from 0s to 1w"},
      {"milter: { stop_timeout = \"61m\"; };",
       "test.conf:1: milter.stop_timeout = \"61m\": must be from 0s to 1h"},
      {"signing: { signature_lifetime = \"367d\"; };",
       "test.conf:1: signing.signature_lifetime = \"367d\": must be from 0s to 366d (0s: "
       "signatures without x=)"},
      {"dns: { authoritative_port = 0; };",
       "test.conf:1: dns.authoritative_port = 0: must be 1 to 65535"},
      {"signing: { max_header_fields = 0; };",
       "test.conf:1: signing.max_header_fields = 0: must be 100 to 1000000 (header fields per "
       "message; real mail has tens)"},
      {"signing: { max_header_bytes = 1000; };",
       "test.conf:1: signing.max_header_bytes = 1000: must be 65536 to 1073741824 (bytes of header "
       "per message; real mail has a few KiB)"},
      {"signing: { headers = [\"list;x\"]; };",
       "test.conf:1: signing.headers.[0] = \"list;x\": a name with ';' cannot be written in the "
       "signature's h= tag, where ';' ends the tag (RFC 6376 3.2)"},
      {"dns: { authoritative_port = 65536; };",
       "test.conf:1: dns.authoritative_port = 65536: must be 1 to 65535"},
      {"dns: { timeout = \"0m\"; };", "test.conf:1: dns.timeout = \"0m\": must be from 1s to 5m"},
      {"dns: { min_propagation = \"1x\"; };",
       "test.conf:1: dns.min_propagation = \"1x\": \"1x\" is not a duration: unknown unit 'x': "
       "use s, m, h, d or w (months and years vary in length); allowed: 0s to 1w"},
      {"log: { target = \"file\"; };",
       "test.conf:1: log.target = \"file\": must be \"stderr\" or \"syslog\""},
      {"log: { level = \"warning\"; };",
       "test.conf:1: log.level = \"warning\": must be \"trace\", \"debug\", \"info\", \"warn\", "
       "\"error\", \"critical\" or \"off\" (did you mean \"warn\"?)"},
      {"metrics: { listen = \"localhost:9795\"; };",
       "test.conf:1: metrics.listen = \"localhost:9795\": must be \"IPv4:PORT\" or \"[IPv6]:PORT\": an IP "
       "address, not a name, and a port from 1 to 65535 (e.g. \"127.0.0.1:9795\", \"[::1]:9795\")"},
      {"metrics: { listen = \"127.0.0.1:0\"; };",
       "test.conf:1: metrics.listen = \"127.0.0.1:0\": must be \"IPv4:PORT\" or \"[IPv6]:PORT\": an IP "
       "address, not a name, and a port from 1 to 65535 (e.g. \"127.0.0.1:9795\", \"[::1]:9795\")"},
      {"log: { audit = \"audit.log\"; };",
       "test.conf:1: log.audit = \"audit.log\": must be an absolute path, starting with '/'"},
      {"domains = ( { domain = \"example.com.\"; stream = \"s\"; } );",
       "test.conf:1: domains.[0].domain = \"example.com.\": write it without the trailing dot: "
       "\"example.com\""},
      {"domains = ( { domain = \"ex_ample.com\"; stream = \"s\"; } );",
       "test.conf:1: domains.[0].domain = \"ex_ample.com\": not a domain name: '_' is not "
       "allowed: use letters, digits, '-' and '.'"},
      {DomainWith("algorithms = [];"),
       "test.conf:3: domains.[0].algorithms = []: lists no algorithm: add \"rsa-sha256\" (and "
       "\"ed25519-sha256\" to dual-sign)"},
      {DomainWith("algorithms = [\"rsa-sha1\"];"),
       "test.conf:3: domains.[0].algorithms.[0] = \"rsa-sha1\": rsa-sha1 is obsolete (RFC 8301): "
       "use \"rsa-sha256\""},
      {DomainWith("algorithms = [\"RSA-SHA256\"];"),
       "test.conf:3: domains.[0].algorithms.[0] = \"RSA-SHA256\": unknown algorithm: use "
       "\"rsa-sha256\" or \"ed25519-sha256\" (did you mean \"rsa-sha256\"?)"},
      {DomainWith("algorithms = [\"ed25519\"];"),
       "test.conf:3: domains.[0].algorithms.[0] = \"ed25519\": unknown algorithm: use "
       "\"rsa-sha256\" or \"ed25519-sha256\" (did you mean \"ed25519-sha256\"?)"},
      {DomainWith("algorithms = [\"rsa-sha256\", \"rsa-sha256\"];"),
       "test.conf:3: domains.[0].algorithms.[1] = \"rsa-sha256\": listed twice: list each "
       "algorithm once"},
      {DomainWith("bits = 512;"),
       "test.conf:3: domains.[0].bits = 512: must be 1024 to 4096 (RFC 8301: RSA keys of at "
       "least 1024 bits; 2048 is the usual choice)"},
      {DomainWith("bits = 8192;"),
       "test.conf:3: domains.[0].bits = 8192: must be 1024 to 4096 (RFC 8301: RSA keys of at "
       "least 1024 bits; 2048 is the usual choice)"},
      {DomainWith("active_keys = 0;"), "test.conf:3: domains.[0].active_keys = 0: must be 1 to 3"},
      {DomainWith("prepublish = 4;"), "test.conf:3: domains.[0].prepublish = 4: must be 0 to 3"},
      {DomainWith("prepublish = -1;"), "test.conf:3: domains.[0].prepublish = -1: must be 0 to 3"},
      {DomainWith("key_lifetime = \"30s\";"),
       "test.conf:3: domains.[0].key_lifetime = \"30s\": must be from 1m to 3650d"},
      {DomainWith("grace = \"-1d\";"),
       "test.conf:3: domains.[0].grace = \"-1d\": \"-1d\" is not a duration: it must not be "
       "negative; allowed: 0s to 365d"},
      {DomainWith("publish_hook = \"hooks/nsupdate\";"),
       "test.conf:3: domains.[0].publish_hook = \"hooks/nsupdate\": must be an absolute path, "
       "starting with '/'"},
      {DomainWith("hook_timeout = \"0s\";"),
       "test.conf:3: domains.[0].hook_timeout = \"0s\": must be from 1s to 1h"},
      {DomainWith("hook_timeout = \"2h\";"),
       "test.conf:3: domains.[0].hook_timeout = \"2h\": must be from 1s to 1h"},
      {DomainWith("key_lifetime = \"522w\";"),
       "test.conf:3: domains.[0].key_lifetime = \"522w\": must be from 1m to 3650d"},
      {DomainWith("grace = \"366d\";"),
       "test.conf:3: domains.[0].grace = \"366d\": must be from 0s to 365d"},
      {DomainWith("subdomains = 1;"),
       "test.conf:3: domains.[0].subdomains = 1: expected true or false, without quotes"},
      {DomainWith("selector_format = \"{stream}-{date}\";"),
       "test.conf:3: domains.[0].selector_format = \"{stream}-{date}\": unknown placeholder "
       "{date}: use {stream}, {yyyymmdd}, {yyyymm}, {alg}, {bits} or {n}"},
      {DomainWith("selector_format = \"{stream}-{alg}\";"),
       "test.conf:3: domains.[0].selector_format = \"{stream}-{alg}\": it has no {yyyymmdd}, "
       "{yyyymm} or {n}, so every new key would get the same selector; selectors must never be "
       "reused: add {yyyymmdd}"},
      {DomainWith("algorithms = [\"rsa-sha256\", \"ed25519-sha256\"]; "
                  "selector_format = \"{stream}-{yyyymmdd}\";"),
       "test.conf:3: domains.[0].selector_format = \"{stream}-{yyyymmdd}\": it has no {alg}, but "
       "2 algorithms sign, so their selectors would collide: add {alg}"},
      {DomainWith("selector_format = \"{yyyymmdd}-{stream}-\";"),
       "test.conf:3: domains.[0].selector_format = \"{yyyymmdd}-{stream}-\": it makes selectors "
       "like \"20260131-mta1-\", which is not a valid DNS name: label '20260131-mta1-' starts or "
       "ends with '-'"},
      {"domains = (\n  { domain = \"example.com\";\n    stream = \"mta_1\";\n  } );",
       "test.conf:3: domains.[0].stream = \"mta_1\": '_' is not allowed in a stream name: it "
       "becomes part of DNS names; use letters, digits, '-' and '.'"},
      {"domains = ( { domain = \"example.com\"; } );",
       "test.conf:1: domains.[0]: default selector_format \"{stream}-{yyyymmdd}-{alg}{bits}\": it "
       "uses {stream}, but this entry has no stream: add stream = \"mta1\"; (a short name for "
       "this server or mail stream)"},
      {"domains = ( { stream = \"mta1\"; } );",
       "test.conf:1: domains.[0]: no domain: add domain = \"example.com\"; to this entry"},
  };
  for (const auto& [text, expected] : cases) {
    SCOPED_TRACE(text);
    EXPECT_EQ(ErrorOf(text), expected);
  }
}

TEST(ParseConfig, SelectorMustFitInDns) {
  std::string stream(60, 'a');
  std::string error = ErrorOf("domains = (\n  { domain = \"example.com\";\n    stream = \"" +
                              stream + "\";\n  } );");
  EXPECT_NE(error.find("test.conf:3: domains.[0].stream"), std::string::npos) << error;
  EXPECT_NE(error.find("longer than 63 characters"), std::string::npos) << error;
}

TEST(ParseConfig, DuplicateDomainsNameBothEntries) {
  EXPECT_EQ(ErrorOf("domains = (\n"
                    "  { domain = \"example.com\"; stream = \"a\"; },\n"
                    "  { domain = \"EXAMPLE.com\"; stream = \"b\"; }\n"
                    ");\n"),
            "test.conf:3: domains.[1].domain = \"EXAMPLE.com\": example.com is already configured "
            "in domains.[0] (test.conf:2): merge the two entries, or list each domain once");
}

TEST(ParseConfig, ReportsEveryErrorOnItsOwnLineInFileOrder) {
  std::string error = ErrorOf("milter: { on_error = \"x\"; };\n"
                              "dns: { poll = \"0s\"; };\n"
                              "lgo: { };\n");
  EXPECT_EQ(error,
            "test.conf:1: milter.on_error = \"x\": must be \"tempfail\" or \"accept\"\n"
            "test.conf:2: dns.poll = \"0s\": must be from 1s to 1d\n"
            "test.conf:3: unknown setting 'lgo': did you mean 'log'?");
}

TEST(ParseConfig, CapsTheNumberOfErrors) {
  std::string hosts;
  for (int i = 0; i < 25; ++i) hosts += std::string(i ? ", " : "") + "\"bad\"";
  std::string error = ErrorOf("signing: { internal_hosts = [" + hosts + "]; };");
  EXPECT_NE(error.find("(5 more errors not shown)"), std::string::npos) << error;
}

TEST(ParseConfig, RejectsNulBytes) {
  EXPECT_EQ(ErrorOf(std::string_view("log: {};\0", 9)),
            "test.conf: contains a NUL byte: not a text file");
}

class LoadConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "dkimrotor_conf_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  std::string dir_;
};

TEST_F(LoadConfigTest, MissingFileIsAnIoErrorNamingThePath) {
  std::string path = dir_ + "/nonexistent.conf";
  util::Result<Config> r = LoadConfig(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, util::ErrorCode::kIo);
  EXPECT_NE(r.error().message.find(path), std::string::npos) << r.error().message;
}

TEST_F(LoadConfigTest, ErrorsNameTheFilePath) {
  std::string path = Write("dkimrotor.conf", "# x\n\nlog: { level = \"loud\"; };\n");
  util::Result<Config> r = LoadConfig(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message.rfind(path + ":3: log.level = \"loud\": must be ", 0), 0u)
      << r.error().message;

  path = Write("syntax.conf", "log: {\n  level = ;\n};\n");
  r = LoadConfig(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message.rfind(path + ":2: syntax error", 0), 0u) << r.error().message;
}

TEST_F(LoadConfigTest, IncludesResolveNextToTheFileAndNameTheirOwnFile) {
  std::string included = Write("domains.conf", "\ndomains = ( { domain = \"example.com\";\n"
                                               "  stream = \"mta1\"; bits = 100; } );\n");
  std::string path = Write("main.conf", "log: { level = \"warn\"; };\n@include \"domains.conf\"\n");
  util::Result<Config> r = LoadConfig(path);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("domains.conf:3: domains.[0].bits = 100: must be 1024 to 4096"),
            std::string::npos)
      << r.error().message;

  Write("domains.conf", "domains = ( { domain = \"example.com\"; stream = \"mta1\"; } );\n");
  r = LoadConfig(path);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->log.level, LogLevel::kWarn);
  ASSERT_EQ(r->domains.size(), 1u);
  EXPECT_EQ(r->domains[0].domain, "example.com");
}

TEST(ExampleConfig, ParsesWithTheDocumentedDefaults) {
  util::Result<Config> r = LoadConfig(DKIMROTOR_EXAMPLE_CONFIG);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  Config defaults;
  EXPECT_EQ(r->milter, defaults.milter);
  EXPECT_EQ(r->signing, defaults.signing);
  EXPECT_EQ(r->keystore, defaults.keystore);
  EXPECT_EQ(r->dns, defaults.dns);
  EXPECT_EQ(r->log, defaults.log);
  EXPECT_EQ(r->metrics, defaults.metrics);
  ASSERT_EQ(r->domains.size(), 2u);
  DomainConfig expected;
  expected.domain = "example.com";
  expected.stream = "mta1";
  EXPECT_EQ(r->domains[0], expected);
  DomainConfig delegated;  // the second entry shows delegation, with every other default
  delegated.domain = "customer.example";
  delegated.delegation = Delegation{"customer-example.keys.example.net", {"k1", "k2", "k3", "k4"}};
  EXPECT_EQ(r->domains[1], delegated);
  EXPECT_TRUE(CheckPractices(*r).empty());
}

// CNAME delegation (issue 12): the zone and the slots, checked against what the rotation needs.
TEST(Delegation, ParsesZoneAndSlots) {
  auto r = ParseConfig(DomainWith("delegation = { zone = \"Customer-com.Keys.Example.NET\"; "
                                  "slots = [\"k1\", \"K2\", \"k3\", \"k4\"]; };"),
                       kSource);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  ASSERT_TRUE(r->domains[0].delegation.has_value());
  EXPECT_EQ(r->domains[0].delegation->zone, "customer-com.keys.example.net");
  EXPECT_EQ(r->domains[0].delegation->slots, (std::vector<std::string>{"k1", "k2", "k3", "k4"}));
  EXPECT_EQ(r->domains[0].SlotsNeeded(), 4);  // 1 algorithm x (2 active + 1 prepublished) + 1
}

TEST(Delegation, TooFewSlotsNamesLineSettingAndHowMany) {
  std::string e = ErrorOf(
      "domains = (\n"
      "  { domain = \"example.com\"; algorithms = [\"rsa-sha256\", \"ed25519-sha256\"];\n"
      "    delegation = { zone = \"example-com.keys.example.net\";\n"
      "                   slots = [\"k1\", \"k2\", \"k3\", \"k4\"]; }; } );\n");
  EXPECT_NE(e.find("test.conf:4"), std::string::npos) << e;
  EXPECT_NE(e.find("slots"), std::string::npos) << e;
  EXPECT_NE(e.find("7 are needed"), std::string::npos) << e;  // 2 x (2 + 1) + 1
}

TEST(Delegation, RejectsDuplicatesBadNamesAndContradictions) {
  EXPECT_NE(ErrorOf(DomainWith("delegation = { zone = \"z.example.net\"; slots = [\"k1\", \"k2\", \"k3\", \"k1\"]; };"))
                .find("listed twice"),
            std::string::npos);
  EXPECT_NE(ErrorOf(DomainWith("delegation = { zone = \"z.example.net\"; slots = [\"k1\", \"k_2;\", \"k3\", \"k4\"]; };"))
                .find("not a usable selector"),
            std::string::npos);
  EXPECT_NE(ErrorOf(DomainWith("delegation = { slots = [\"k1\", \"k2\", \"k3\", \"k4\"]; };")).find("no zone"),
            std::string::npos);
  EXPECT_NE(ErrorOf(DomainWith("delegation = { zone = \"z.example.net\"; };")).find("no slots"), std::string::npos);
  EXPECT_NE(ErrorOf(DomainWith("delegation = { zone = \"example.com\"; slots = [\"k1\", \"k2\", \"k3\", \"k4\"]; };"))
                .find("the domain itself"),
            std::string::npos);
  std::string e = ErrorOf(DomainWith("selector_format = \"k{n}\"; delegation = { zone = \"z.example.net\"; "
                                     "slots = [\"k1\", \"k2\", \"k3\", \"k4\"]; };"));
  EXPECT_NE(e.find("selector_format"), std::string::npos) << e;
  EXPECT_NE(e.find("no effect with delegation"), std::string::npos) << e;
  e = ErrorOf(DomainWith("delegation = { zone = \"z.example.net\"; slot = [\"k1\"]; };"));
  EXPECT_NE(e.find("unknown setting"), std::string::npos) << e;
}

TEST(ExampleConfig, SetsEveryKnownSetting) {
  util::Result<std::string> text = util::ReadFile(DKIMROTOR_EXAMPLE_CONFIG);
  ASSERT_TRUE(text.has_value()) << text.error().message;
  std::vector<std::string> known = KnownSettings();
  EXPECT_GE(known.size(), 30u);
  std::vector<std::string> assigned;  // names set on a line of their own, not in a comment
  size_t start = 0;
  while (start < text->size()) {
    size_t end = text->find('\n', start);
    if (end == std::string::npos) end = text->size();
    std::string line = text->substr(start, end - start);
    size_t indent = line.find_first_not_of(' ');
    size_t eq = line.find(" = ");
    if (indent != std::string::npos && eq != std::string::npos && line[indent] != '#')
      assigned.push_back(line.substr(indent, eq - indent));
    start = end + 1;
  }
  for (const std::string& path : known) {
    std::string name = path.substr(path.rfind('.') + 1);
    EXPECT_NE(std::find(assigned.begin(), assigned.end(), name), assigned.end()) << path;
  }
}

}  // namespace
}  // namespace dkimrotor::conf

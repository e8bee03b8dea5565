// The OpenDKIM configurations Debian's opendkim package documents, and the awkward ones, each
// planned and rendered; every rendered configuration is loaded by the real loader.
#include "migrate/opendkim_migration.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "conf/loader.h"
#include "migrate/config_writer.h"
#include "migrate/key_file_check.h"
#include "signer/private_key.h"

namespace dkimrotor::migrate {
namespace {

class OpenDkimMigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/migrate_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text, unsigned mode = 0644) {
    const std::string path = dir_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
    return path;
  }

  std::string Key(const std::string& name, signer::Algorithm a = signer::Algorithm::kRsaSha256, unsigned mode = 0600) {
    auto key = signer::PrivateKey::Generate(a, 1024);
    EXPECT_TRUE(key.has_value());
    return Write(name, (*key)->ToPem().value(), mode);
  }

  MigrationPlan Plan(const std::string& conf_text) {
    auto plan = PlanMigration(Write("opendkim.conf", conf_text));
    EXPECT_TRUE(plan.has_value()) << plan.error().message;
    return plan ? std::move(plan).value() : MigrationPlan{};
  }

  // Renders the plan and loads it with conf::LoadConfig, as `dkimrotor check -c` would.
  conf::Config Load(const MigrationPlan& plan) {
    RenderOptions options;
    options.keystore_directory = dir_ + "/keystore";
    options.stream = "mx1";
    for (const auto& d : plan.domains)
      for (const auto& k : d.keys)
        if (auto check = CheckKeyFile(k.key_file)) options.algorithms[d.domain].push_back(check->algorithm);
    const std::string path = Write("new.conf", RenderConfig(plan, options));
    auto config = conf::LoadConfig(path);
    EXPECT_TRUE(config.has_value()) << config.error().message << "\n" << RenderConfig(plan, options);
    return config ? std::move(config).value() : conf::Config{};
  }

  static bool Noted(const MigrationPlan& plan, const std::string& part) {
    for (const auto& n : plan.notes)
      if (n.find(part) != std::string::npos) return true;
    return false;
  }

  static std::string Notes(const MigrationPlan& plan) {
    std::string all;
    for (const auto& n : plan.notes) all += n + "\n";
    return all;
  }

  std::string dir_;
};

// Debian's /etc/opendkim.conf as installed: no signing yet, but its settings carry over.
TEST_F(OpenDkimMigrationTest, DebiansInstalledConfiguration) {
  MigrationPlan plan = Plan(
      "# This is a basic configuration for signing and verifying.\n"
      "Syslog\t\t\tyes\nSyslogSuccess\t\tyes\n#LogWhy\t\t\tno\n\n"
      "Canonicalization\trelaxed/simple\n#Mode\t\t\tsv\n#SubDomains\t\tno\n"
      "OversignHeaders\t\tFrom\n"
      "UserID\t\t\topendkim\nUMask\t\t\t007\n"
      "Socket\t\t\tlocal:/run/opendkim/opendkim.sock\n"
      "PidFile\t\t\t/run/opendkim/opendkim.pid\n"
      "TrustAnchorFile\t\t/usr/share/dns/root.key\n");
  EXPECT_TRUE(plan.domains.empty());
  EXPECT_EQ(plan.socket, "local:/run/opendkim/opendkim.sock");
  EXPECT_EQ(plan.canonicalization, "relaxed/simple");
  EXPECT_EQ(plan.oversign, std::vector<std::string>{"from"});
  EXPECT_EQ(plan.user, "opendkim");
  EXPECT_EQ(plan.socket_mode, 0660u);
  EXPECT_TRUE(plan.syslog);
  EXPECT_TRUE(plan.notes.empty()) << Notes(plan);
  plan.user.reset();  // the loader looks the account up; this machine need not have it
  conf::Config c = Load(plan);
  EXPECT_EQ(c.milter.socket, "local:/run/opendkim/opendkim.sock");
  EXPECT_EQ(c.milter.socket_mode, 0660u);
  EXPECT_EQ(c.signing.oversign, std::vector<std::string>{"from"});
  EXPECT_EQ(c.log.target, conf::LogTarget::kSyslog);
}

// /usr/share/doc/opendkim/examples/opendkim.conf.simple: single-key mode.
TEST_F(OpenDkimMigrationTest, SingleKeyModeFromTheSimpleExample) {
  const std::string key = Key("keys/example.private");
  MigrationPlan plan = Plan("#LogWhy                 yes\nSyslog                  yes\n"
                            "Canonicalization\trelaxed/simple\n\n"
                            "Domain\t\t\texample.com\nSelector\t\tdefault\nKeyFile\t\t\t" + key + "\n\n"
                            "Socket                  inet:8891@localhost\n\n"
                            "ReportAddress           postmaster@localhost\nSendReports             yes\n"
                            "# InternalHosts\t\t192.168.0.0/16, 10.0.0.0/8, 172.16.0.0/12\n");
  ASSERT_EQ(plan.domains.size(), 1u);
  EXPECT_EQ(plan.domains[0].domain, "example.com");
  EXPECT_FALSE(plan.domains[0].subdomains);
  ASSERT_EQ(plan.domains[0].keys.size(), 1u);
  EXPECT_EQ(plan.domains[0].keys[0].selector, "default");
  EXPECT_EQ(plan.domains[0].keys[0].key_file, key);
  EXPECT_TRUE(Noted(plan, "ReportAddress postmaster@localhost: not carried over"));
  EXPECT_TRUE(Noted(plan, "SendReports yes: not carried over"));
  conf::Config c = Load(plan);
  ASSERT_EQ(c.domains.size(), 1u);
  EXPECT_EQ(c.domains[0].domain, "example.com");
  EXPECT_EQ(c.milter.socket, "inet:8891@localhost");
}

TEST_F(OpenDkimMigrationTest, VerifyOnlyModeIsReported) {
  MigrationPlan plan = Plan("Socket inet:8891@localhost\nMode v\n");
  EXPECT_TRUE(Noted(plan, "Mode v: verifying is not carried over"));
  EXPECT_TRUE(Noted(plan, "OpenDKIM did not sign here"));
  Load(plan);
}

// The refile SigningTable of opendkim.conf(5), with the wildcards people write.
TEST_F(OpenDkimMigrationTest, RefileWildcardsPickDomainsAndSubdomains) {
  const std::string k1 = Key("keys/example.com/mail.private");
  const std::string k2 = Key("keys/example.org/s1.private");
  const std::string k3 = Key("keys/example.net/s1.private");
  Write("KeyTable",
        "mail._domainkey.example.com  example.com:mail:" + k1 + "\n"
        "s1._domainkey.example.org    example.org:s1:" + k2 + "\n"
        "s1._domainkey.example.net    example.net:s1:" + k3 + "\n");
  Write("SigningTable",
        "*@example.com      mail._domainkey.example.com\n"
        "*@*.example.com    mail._domainkey.example.com\n"
        "*.example.org      s1._domainkey.example.org\n"
        "boss@example.net   s1._domainkey.example.net\n"
        "*                  mail._domainkey.example.com\n"
        "*@example.info     s1._domainkey.example.org\n");
  MigrationPlan plan = Plan("KeyTable refile:" + dir_ + "/KeyTable\n"  // a refile KeyTable reads the same
                            "SigningTable refile:" + dir_ + "/SigningTable\n");
  ASSERT_EQ(plan.domains.size(), 2u) << Notes(plan);
  EXPECT_EQ(plan.domains[0].domain, "example.com");
  EXPECT_TRUE(plan.domains[0].subdomains);
  EXPECT_EQ(plan.domains[1].domain, "example.org");
  EXPECT_TRUE(plan.domains[1].subdomains);
  EXPECT_TRUE(Noted(plan, "SigningTable boss@example.net s1._domainkey.example.net: not carried over: it names single addresses"));
  EXPECT_TRUE(Noted(plan, "SigningTable * mail._domainkey.example.com: not carried over: it matches every domain"));
  EXPECT_TRUE(Noted(plan, "mail from example.info signed with d=example.org (another domain)"));
  EXPECT_TRUE(Noted(plan, "KeyTable entry s1._domainkey.example.net (s1._domainkey.example.net) is not used"));
  conf::Config c = Load(plan);
  ASSERT_EQ(c.domains.size(), 2u);
  EXPECT_TRUE(c.domains[0].subdomains);
}

// A plain (non-refile) SigningTable: exact domains, ".domain" for subdomains, addresses.
TEST_F(OpenDkimMigrationTest, PlainSigningTableWithPercentDomains) {
  Key("keys/example.com.private");
  Key("keys/example.org.private");
  Write("KeyTable", "shared  %:mail:" + dir_ + "/keys/%.private\n");
  Write("SigningTable", "example.com shared\n.example.org shared\nuser@example.net shared\n");
  MigrationPlan plan = Plan("KeyTable " + dir_ + "/KeyTable\nSigningTable file:" + dir_ + "/SigningTable\n");
  ASSERT_EQ(plan.domains.size(), 2u) << Notes(plan);
  EXPECT_EQ(plan.domains[0].domain, "example.com");
  EXPECT_FALSE(plan.domains[0].subdomains);
  EXPECT_EQ(plan.domains[0].keys[0].key_file, dir_ + "/keys/example.com.private");
  EXPECT_EQ(plan.domains[1].domain, "example.org");
  EXPECT_TRUE(plan.domains[1].subdomains);
  EXPECT_EQ(plan.domains[1].keys[0].key_file, dir_ + "/keys/example.org.private");
  EXPECT_TRUE(Noted(plan, "user@example.net shared: not carried over: it names single addresses"));
  Load(plan);
}

// Several keys for one domain (a rollover in progress, or RSA and Ed25519 side by side) become
// several imported keys of that domain; the algorithms follow the keys.
TEST_F(OpenDkimMigrationTest, SeveralKeysForOneDomain) {
  const std::string old_key = Key("keys/2023.private");
  const std::string new_key = Key("keys/2024.private");
  const std::string ed_key = Key("keys/ed.private", signer::Algorithm::kEd25519Sha256);
  Write("KeyTable", "old example.com:sel2023:" + old_key + "\nnew example.com:sel2024:" + new_key +
                        "\ned example.com:ed2024:" + ed_key + "\n");
  Write("SigningTable", "*@example.com new\n*@example.com old\n*@example.com ed\n*@EXAMPLE.com new\n");
  MigrationPlan plan = Plan("Canonicalization relaxed/relaxed\nMultipleSignatures yes\nKeyTable " + dir_ + "/KeyTable\nSigningTable refile:" + dir_ +
                            "/SigningTable\n");
  ASSERT_EQ(plan.domains.size(), 1u);
  ASSERT_EQ(plan.domains[0].keys.size(), 3u);
  EXPECT_EQ(plan.domains[0].keys[0].selector, "sel2024");
  EXPECT_EQ(plan.domains[0].keys[1].selector, "sel2023");
  EXPECT_EQ(plan.domains[0].keys[2].selector, "ed2024");
  EXPECT_TRUE(plan.notes.empty()) << Notes(plan);
  conf::Config c = Load(plan);
  ASSERT_EQ(c.domains.size(), 1u);
  EXPECT_EQ(c.domains[0].algorithms,
            (std::vector<signer::Algorithm>{signer::Algorithm::kRsaSha256, signer::Algorithm::kEd25519Sha256}));
}

// Comments, blank lines, CRLF line ends and odd case in names, in the conf and its tables.
TEST_F(OpenDkimMigrationTest, CommentsBlankLinesAndCrlf) {
  const std::string key = Key("keys/k.private");
  Write("KeyTable", "# the keys\r\n\r\nk1\texample.com:s1:" + key + "   # a comment\r\n");
  Write("SigningTable", "\r\n*@example.com\tk1\r\n# *@example.org k1\r\n");
  Write("hosts", "# trusted\r\n127.0.0.1\r\n10.0.0.0/8\r\n\r\n[::1]\r\n");
  MigrationPlan plan = Plan("# OpenDKIM\r\n\r\nkeytable\t" + dir_ + "/KeyTable\r\n  SIGNINGTABLE refile:" + dir_ +
                            "/SigningTable   # trailing\r\nInternalHosts " + dir_ +
                            "/hosts\r\ncanonicalization relaxed\r\nSignatureTTL 86400\r\n");
  ASSERT_EQ(plan.domains.size(), 1u) << Notes(plan);
  ASSERT_EQ(plan.domains[0].keys.size(), 1u);
  EXPECT_EQ(plan.domains[0].keys[0].selector, "s1");
  EXPECT_EQ(plan.domains[0].keys[0].key_file, key);
  EXPECT_EQ(plan.internal_hosts, (std::vector<std::string>{"127.0.0.1", "10.0.0.0/8", "::1"}));
  EXPECT_EQ(plan.canonicalization, "relaxed/simple");  // one word: the body stays simple
  EXPECT_EQ(plan.signature_lifetime, 86400);
  EXPECT_TRUE(plan.notes.empty()) << Notes(plan);
  conf::Config c = Load(plan);
  EXPECT_EQ(c.signing.signature_lifetime, std::chrono::seconds(86400));
  EXPECT_EQ(c.signing.internal_hosts.size(), 3u);
}

TEST_F(OpenDkimMigrationTest, InternalHostsThatAreNotNetworks) {
  MigrationPlan plan = Plan("InternalHosts csl:127.0.0.1, localhost, mail.example.com, !10.1.2.3, 10.0.0.0/8, "
                            "192.168.1.5/24\nExternalIgnoreList 192.0.2.0/24\n");
  EXPECT_EQ(plan.internal_hosts,
            (std::vector<std::string>{"127.0.0.1", "127.0.0.1/32", "::1/128", "10.0.0.0/8"}));
  EXPECT_TRUE(Noted(plan, "InternalHosts mail.example.com: not carried over"));
  EXPECT_TRUE(Noted(plan, "InternalHosts !10.1.2.3: not carried over: dkimrotor has no exclusions"));
  EXPECT_TRUE(Noted(plan, "InternalHosts 192.168.1.5/24: not carried over"));
  EXPECT_TRUE(Noted(plan, "ExternalIgnoreList 192.0.2.0/24: not carried over, not needed"));
  Load(plan);
}

TEST_F(OpenDkimMigrationTest, HeadersOnActionsAndUnknownSettings) {
  MigrationPlan plan = Plan("SignHeaders From,To,Subject,Date\nOversignHeaders From,Subject\n"
                            "On-Default tempfail\nOn-InternalError accept\nOn-BadSignature reject\n"
                            "On-SignatureError discard\nSignatureAlgorithm rsa-sha1\nKeyTable db:/etc/keys.db\n"
                            "SigningTable refile:/etc/st\nBogusSetting 1\n");
  EXPECT_EQ(plan.headers, (std::vector<std::string>{"from", "to", "subject", "date"}));
  EXPECT_EQ(plan.oversign, (std::vector<std::string>{"from", "subject"}));
  EXPECT_EQ(plan.on_error, "accept");
  EXPECT_TRUE(Noted(plan, "On-BadSignature reject: not carried over: a verification result"));
  EXPECT_TRUE(Noted(plan, "On-SignatureError discard: not carried over"));
  EXPECT_TRUE(Noted(plan, "SignatureAlgorithm rsa-sha1: not carried over"));
  EXPECT_TRUE(Noted(plan, "KeyTable db:/etc/keys.db: not carried over: dkimrotor migrate reads only flat files"));
  EXPECT_TRUE(Noted(plan, "BogusSetting 1: not carried over: dkimrotor has no such setting"));
  conf::Config c = Load(plan);
  EXPECT_EQ(c.milter.on_error, conf::OnError::kAccept);
}

TEST_F(OpenDkimMigrationTest, KeyHeldInTheTableIsNotCopiedOrPrinted) {
  Write("KeyTable", "inline example.com:s1:MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAL\n");
  Write("SigningTable", "example.com inline\n");
  MigrationPlan plan = Plan("KeyTable " + dir_ + "/KeyTable\nSigningTable " + dir_ + "/SigningTable\n");
  EXPECT_TRUE(Noted(plan, "KeyTable entry inline holds the key itself, not a file: not imported"));
  EXPECT_FALSE(Noted(plan, "MIIC"));
}

// Found by the opendkim fuzz target: a key pasted on a line of opendkim.conf that is no setting
// came back in the warning naming the line.
TEST_F(OpenDkimMigrationTest, KeyPastedIntoTheConfigurationIsNotPrinted) {
  MigrationPlan plan = Plan("Socket inet:8891@localhost\n"
                            "inline example.net:s2:MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAL\n"
                            "KeyFile MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAL\n");
  EXPECT_TRUE(Noted(plan, "inline example.net:s2:[key data left out]: not carried over")) << Notes(plan);
  EXPECT_FALSE(Noted(plan, "MIIC")) << Notes(plan);
  EXPECT_FALSE(Noted(plan, "AAoGBAL")) << Notes(plan);
}

TEST_F(OpenDkimMigrationTest, IncludeIsRead) {
  Write("conf.d/socket.conf", "Socket inet:12345@127.0.0.1\n");
  MigrationPlan plan = Plan("Include conf.d/socket.conf\n");
  EXPECT_EQ(plan.socket, "inet:12345@127.0.0.1");
}

TEST_F(OpenDkimMigrationTest, UnreadableConfigurationIsAnError) {
  auto plan = PlanMigration(dir_ + "/missing.conf");
  ASSERT_FALSE(plan.has_value());
  EXPECT_NE(plan.error().message.find(dir_ + "/missing.conf"), std::string::npos);
}

TEST_F(OpenDkimMigrationTest, MissingTableIsReported) {
  MigrationPlan plan = Plan("KeyTable " + dir_ + "/none\nSigningTable refile:" + dir_ + "/none2\n");
  EXPECT_TRUE(plan.domains.empty());
  EXPECT_TRUE(Noted(plan, "KeyTable " + dir_ + "/none: not carried over"));
  Load(plan);
}

TEST(KeyFileCheck, BadPermissionsAreReadAndReported) {
  char tmpl[] = "/tmp/keycheck_test.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/k.private";
  std::ofstream(path) << signer::PrivateKey::Generate(signer::Algorithm::kRsaSha256, 1024).value()->ToPem().value();
  ::chmod(path.c_str(), 0644);
  auto check = CheckKeyFile(path);
  ASSERT_TRUE(check.has_value()) << check.error().message;
  EXPECT_EQ(check->algorithm, signer::Algorithm::kRsaSha256);
  EXPECT_NE(check->exposure.find("readable or writable by group and others (mode 0644)"), std::string::npos)
      << check->exposure;
  EXPECT_EQ(check->exposure.find("PRIVATE KEY"), std::string::npos);
  ::chmod(path.c_str(), 0600);
  EXPECT_TRUE(CheckKeyFile(path)->exposure.empty());
  std::filesystem::remove_all(tmpl);
}

TEST(KeyFileCheck, MissingAndBrokenKeys) {
  auto missing = CheckKeyFile("/nonexistent/k.private");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, util::ErrorCode::kNotFound);
  char tmpl[] = "/tmp/keycheck_test.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/k.private";
  std::ofstream(path) << "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n";
  auto broken = CheckKeyFile(path);
  ASSERT_FALSE(broken.has_value());
  EXPECT_EQ(broken.error().code, util::ErrorCode::kInvalidArgument);
  EXPECT_EQ(CheckKeyFile(tmpl).error().code, util::ErrorCode::kIo);  // a folder
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace dkimrotor::migrate

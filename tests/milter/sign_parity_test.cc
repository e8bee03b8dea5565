// One signing path: the same messages through the running milter (as an MTA hands them over)
// and through `dkimrotor sign -c` get the same decision, the same d=, s= and h=, and both
// results verify with dkimpy against the test DNS (a real Knot serving the keystore's keys).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "signer/message_parser.h"
#include "signer/tag_list.h"
#include "tests/keystore/knot_server.h"
#include "tests/milter/milter_client.h"

namespace dkimrotor::milter {
namespace {

using keystore::testing::KnotServer;
using keystore::testing::ReadText;
using keystore::testing::RunProcess;
using testing::Header;
using testing::MilterClient;
using testing::Modification;
using testing::Reply;

// The tags of every DKIM-Signature at the top of `message`, as "d=..;s=..;h=..", in order.
std::vector<std::string> SignatureIdentity(const std::string& message) {
  std::vector<std::string> out;
  auto end = signer::FindEndOfHeaders(message, /*at_eof=*/true);
  auto fields = signer::ParseHeaderBlock(std::string_view(message).substr(0, end ? end->header_bytes : message.size()));
  if (!fields) return {"unparsable: " + fields.error().message};
  for (const auto& f : *fields) {
    if (signer::FieldKey(f.name) != "dkim-signature") continue;
    auto tags = signer::TagList::Parse(f.value);
    if (!tags) return {"bad signature: " + tags.error().message};
    std::string h(tags->Get("h").value_or(""));
    std::erase_if(h, [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
    out.push_back("d=" + std::string(tags->Get("d").value_or("")) + ";s=" +
                  std::string(tags->Get("s").value_or("")) + ";a=" + std::string(tags->Get("a").value_or("")) +
                  ";h=" + h);
  }
  return out;
}

struct Case {
  std::string name;
  std::string message;
  bool signs;
  std::string domain;  // d= when signed
};

class SignParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!KnotServer::Available()) GTEST_SKIP() << "knotd is not installed";
    KnotServer::Options options;
    options.zones = {"example.test", "other.test"};
    auto knot = KnotServer::Start(options);
    ASSERT_TRUE(knot.has_value()) << knot.error().message;
    knot_ = std::move(*knot);
    dir_ = knot_->dir();
    auto port = testing::FreeTcpPort();
    ASSERT_TRUE(port.has_value()) << port.error().message;
    socket_ = "inet:" + std::to_string(*port) + "@127.0.0.1";
    config_ = dir_ + "/dkimrotor.conf";
    const std::string hook = std::string(DKIMROTOR_SOURCE_DIR) + "/contrib/hooks/nsupdate";
    std::ofstream(config_)
        << "milter: { socket = \"" << socket_ << "\"; on_bad_message = \"accept\"; stop_timeout = \"2s\"; };\n"
        << "signing: { internal_hosts = [\"127.0.0.1/32\"]; };\n"
        << "keystore: { directory = \"" << dir_ << "/keystore\"; };\n"
        << "dns: { resolvers = [\"" << knot_->address() << "\"]; authoritative_port = " << knot_->port() << "; min_propagation = \"0s\"; poll = \"1h\"; timeout = \"2s\"; };\n"
        << "log: { level = \"info\"; };\n"
        << "domains = (\n"
        << "  { domain = \"example.test\"; stream = \"mta1\"; algorithms = [\"rsa-sha256\", \"ed25519-sha256\"];\n"
        << "    bits = 1024; active_keys = 1; prepublish = 0; publish_hook = \"" << hook << "\"; },\n"
        << "  { domain = \"other.test\"; stream = \"mta1\"; subdomains = true; bits = 1024; active_keys = 1;\n"
        << "    prepublish = 0; publish_hook = \"" << hook << "\"; } );\n";
    env_ = knot_->NsupdateHookEnv();
    for (const char* domain : {"example.test", "other.test"}) {
      auto r = RunProcess({DKIMROTOR_BINARY, "rotate", "-c", config_, "--domain", domain}, env_);
      ASSERT_TRUE(r.has_value());
      ASSERT_EQ(r->exit_code, 0) << r->output;
    }
    auto pid = keystore::testing::SpawnProcess({DKIMROTOR_BINARY, "run", "-c", config_}, env_, dir_ + "/daemon.log");
    ASSERT_TRUE(pid.has_value()) << pid.error().message;
    pid_ = *pid;
    for (int i = 0; i < 200; ++i) {
      if (auto c = Client(); c) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "the daemon does not accept connections: " << ReadText(dir_ + "/daemon.log");
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  util::Result<MilterClient> Client() {
    MilterClient::Options o;
    o.socket = socket_;
    o.timeout = std::chrono::milliseconds(10000);
    return MilterClient::Connect(o);
  }

  // dkimpy checks the first `signatures` DKIM-Signature fields against Knot.
  void ExpectVerifies(const std::string& message, size_t signatures, const std::string& what) {
    const std::string file = dir_ + "/verify.eml";
    std::ofstream(file) << message;
    auto r = RunProcess({"/usr/bin/python3", std::string(DKIMROTOR_SOURCE_DIR) + "/tests/interop/verify_with_dns.py",
                         file, std::to_string(knot_->port()), std::to_string(signatures), "first"},
                        {{"PATH", "/usr/bin:/bin"}});
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->exit_code, 0) << what << ": " << r->output << "\n" << message;
  }

  // Mail::DKIM checks every rsa-sha256 signature of d=example.test against Knot (Debian 12's
  // Mail::DKIM predates ed25519); at least one must be there.
  void ExpectMailDkimVerifies(const std::string& message, const std::string& what) {
    const std::string file = dir_ + "/verify-perl.eml";
    std::ofstream(file) << message;
    auto r = RunProcess({"/usr/bin/perl", std::string(DKIMROTOR_SOURCE_DIR) + "/tests/interop/verify_mail_dkim.pl",
                         "--dns", "127.0.0.1:" + std::to_string(knot_->port()), file},
                        {{"PATH", "/usr/bin:/bin"}});
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->exit_code, 0) << what << ": " << r->output;
    int checked = 0;
    std::istringstream lines(r->output);
    for (std::string line; std::getline(lines, line);) {
      std::vector<std::string> cols;
      std::istringstream fields(line);
      for (std::string c; std::getline(fields, c, '\t');) cols.push_back(c);
      if (cols.size() < 6 || cols[2] != "example.test" || cols[4] != "rsa-sha256") continue;
      ++checked;
      EXPECT_EQ(cols[5], "pass") << what << ": " << line;
    }
    EXPECT_GE(checked, 1) << what << ": " << r->output;
  }

  // Waits for the daemon to log "not signed: <reason>".
  void ExpectLogged(const std::string& reason) {
    bool logged = false;
    for (int i = 0; i < 100 && !logged; ++i) {
      logged = ReadText(dir_ + "/daemon.log").find("not signed: " + reason) != std::string::npos;
      if (!logged) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(logged) << "the milter did not log '" << reason << "': " << ReadText(dir_ + "/daemon.log");
  }

  std::unique_ptr<KnotServer> knot_;
  std::string dir_, socket_, config_;
  std::map<std::string, std::string> env_;
  pid_t pid_ = -1;
};

// The headers and body as Postfix hands them to a milter: the header ends at the first empty
// line or at the first line that is no field, which then begins the body.
void SplitAsAnMta(const std::string& message, std::vector<Header>* headers, std::string* body) {
  auto end = signer::FindEndOfHeaders(message, /*at_eof=*/true);
  const size_t header_bytes = end ? end->header_bytes : message.size();
  auto fields = signer::ParseHeaderBlock(std::string_view(message).substr(0, header_bytes));
  ASSERT_TRUE(fields.has_value()) << fields.error().message;
  for (const auto& f : *fields) headers->push_back({f.name, f.value});
  *body = end ? message.substr(end->body_start) : "";
}

TEST_F(SignParityTest, MilterAndSignConfigDecideAndSignAlike) {
  const std::string body = "Hello,\r\n\r\nthe same message, two ways in.\r\n";
  const std::vector<Case> cases = {
      {"plain", "From: Alice <alice@example.test>\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\n" + body, true, "example.test"},
      {"no From", "To: bob@example.net\r\nSubject: no sender\r\n\r\n" + body, false, ""},
      {"two From", "From: a@example.test\r\nFrom: b@example.test\r\nSubject: two\r\n\r\n" + body, false, ""},
      {"unconfigured domain", "From: carol@example.org\r\nSubject: elsewhere\r\n\r\n" + body, false, ""},
      {"subdomain, subdomains off", "From: dave@mail.example.test\r\nSubject: sub\r\n\r\n" + body, false, ""},
      {"subdomain, subdomains on", "From: erin@lists.other.test\r\nSubject: sub\r\n\r\n" + body, true, "other.test"},
      {"upper-case domain", "From: Frank <FRANK@EXAMPLE.TEST>\r\nSubject: caps\r\n\r\n" + body, true, "example.test"},
      {"display name and comments",
       "From: \"Doe, John (the boss)\" (comment) <john@example.test> (more)\r\nSubject: names\r\n\r\n" + body, true,
       "example.test"},
      {"folded From", "From: Grace\r\n Hopper\r\n\t<grace@example.test>\r\nSubject: fold\r\n\r\n" + body, true,
       "example.test"},
      {"header without colon",
       "From: heidi@example.test\r\nSubject: broken\r\nthis line has no colon\r\nX-After: y\r\n\r\n" + body, true,
       "example.test"},
      {"existing DKIM-Signature",
       "DKIM-Signature: v=1; a=rsa-sha256; d=example.net; s=old; h=from; bh=AAAA; b=BBBB\r\n"
       "From: ivan@example.test\r\nSubject: resent\r\n\r\n" + body,
       true, "example.test"},
  };
  const std::string daemon_log = dir_ + "/daemon.log";
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    // Through `dkimrotor sign -c`.
    auto signed_by_cli = RunProcess({DKIMROTOR_BINARY, "sign", "-c", config_}, {{"PATH", "/usr/bin:/bin"}}, c.message);
    ASSERT_TRUE(signed_by_cli.has_value());
    EXPECT_EQ(signed_by_cli->exit_code == 0, c.signs) << signed_by_cli->output;

    // Through the milter, as the MTA hands the message over.
    std::vector<Header> headers;
    std::string mta_body;
    ASSERT_NO_FATAL_FAILURE(SplitAsAnMta(c.message, &headers, &mta_body));
    auto client = Client();
    ASSERT_TRUE(client.has_value()) << client.error().message;
    auto result = client->SendMessage("127.0.0.1", "", headers, mta_body);
    ASSERT_TRUE(result.has_value()) << result.error().message;
    EXPECT_EQ(result->reply.kind, Reply::Kind::kAccept) << result->reply.ToString();
    const auto inserted = result->Find(Modification::Kind::kInsertHeader);
    EXPECT_EQ(!inserted.empty(), c.signs);

    if (!c.signs) {
      // The same reason in both: sign prints it, the daemon logs it.
      const std::string out = signed_by_cli->output;
      const std::string prefix = "dkimrotor sign: ";
      ASSERT_EQ(out.rfind(prefix, 0), 0u) << out;
      const std::string reason = out.substr(prefix.size(), out.find('\n') - prefix.size());
      bool logged = false;
      for (int i = 0; i < 100 && !logged; ++i) {
        logged = ReadText(daemon_log).find("not signed: " + reason) != std::string::npos;
        if (!logged) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      EXPECT_TRUE(logged) << "the milter did not log '" << reason << "': " << ReadText(daemon_log);
      continue;
    }
    const std::string by_milter = client->ApplyModifications(headers, mta_body, *result);
    const std::vector<std::string> cli_ids = SignatureIdentity(signed_by_cli->output);
    const std::vector<std::string> milter_ids = SignatureIdentity(by_milter);
    const size_t ours = c.domain == "example.test" ? 2 : 1;  // example.test dual-signs
    ASSERT_GE(cli_ids.size(), ours);
    ASSERT_EQ(cli_ids, milter_ids);
    EXPECT_EQ(cli_ids[0].rfind("d=" + c.domain + ";", 0), 0u) << cli_ids[0];
    ASSERT_NO_FATAL_FAILURE(ExpectVerifies(signed_by_cli->output, ours, "sign -c"));
    ASSERT_NO_FATAL_FAILURE(ExpectVerifies(by_milter, ours, "milter"));
    // Both deliver the same bytes but for the signatures' t= and b=.
    auto without_signatures = [&](const std::string& m) {
      std::string rest = m;
      for (size_t i = 0; i < ours; ++i) {
        auto end = signer::FindEndOfHeaders(rest, true);
        auto fields = signer::ParseHeaderBlock(std::string_view(rest).substr(0, end->header_bytes));
        EXPECT_EQ(fields->front().name, "DKIM-Signature");
        rest = rest.substr(fields->front().name.size() + 1 + fields->front().value.size() + 2);
      }
      return rest;
    };
    EXPECT_EQ(without_signatures(signed_by_cli->output), without_signatures(by_milter));
  }
}

// Issue 15: header bytes verifiers read differently, through `sign -c` and through the milter
// (Postfix hands a bare CR inside a field to the milter unchanged). Signed ones verify with
// dkimpy and Mail::DKIM without the field in h=; a From that cannot be signed is refused alike.
TEST_F(SignParityTest, MalformedHeaderBytesSignAlikeAndVerifyWithBoth) {
  struct Malformed {
    std::string name;
    std::string message;
    std::string left_out;  // a name h= must not hold; empty when unsigned
    std::string reason;    // when unsigned
  };
  const std::string body = "Hello\r\n";
  const std::string from = "From: Alice <alice@example.test>\r\n";
  const std::string rest = "To: bob@example.net\r\nMessage-ID: <1@example.test>\r\n";
  const std::vector<Malformed> cases = {
      {"bare CR inside Subject", from + rest + "Subject: x\rSubject: y\r\n\r\n" + body, "subject", ""},
      {"bare CR opening Date", from + rest + "Date:\r Mon, 04 Mar 2024 10:00:00 +0000\r\n\r\n" + body, "date", ""},
      {"bare CR ending Subject", from + rest + "Subject: x\r\r\n\r\n" + body, "subject", ""},
      {"form feed in Subject", from + rest + "Subject: \fx\r\n\r\n" + body, "subject", ""},
      {"';' in a list-* name", from + rest + "List-X;y: 1\r\nList-Id: <l.example.test>\r\n\r\n" + body,
       "list-x;y", ""},
      {"bare CR opening From", "From:\r Alice <alice@example.test>\r\n" + rest + "\r\n" + body, "",
       "the From field holds a bare CR, which verifiers canonicalize differently; From must be signed"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto by_cli = RunProcess({DKIMROTOR_BINARY, "sign", "-c", config_}, {{"PATH", "/usr/bin:/bin"}}, c.message);
    ASSERT_TRUE(by_cli.has_value());
    std::vector<Header> headers;
    std::string mta_body;
    ASSERT_NO_FATAL_FAILURE(SplitAsAnMta(c.message, &headers, &mta_body));
    auto client = Client();
    ASSERT_TRUE(client.has_value()) << client.error().message;
    auto result = client->SendMessage("127.0.0.1", "", headers, mta_body);
    ASSERT_TRUE(result.has_value()) << result.error().message;
    EXPECT_EQ(result->reply.kind, Reply::Kind::kAccept) << result->reply.ToString();
    const bool milter_signed = !result->Find(Modification::Kind::kInsertHeader).empty();
    if (!c.reason.empty()) {
      EXPECT_EQ(by_cli->exit_code, 1) << by_cli->output;
      EXPECT_EQ(by_cli->output, "dkimrotor sign: " + c.reason + "\n");
      EXPECT_FALSE(milter_signed);
      ExpectLogged(c.reason);
      continue;
    }
    ASSERT_EQ(by_cli->exit_code, 0) << by_cli->output;
    ASSERT_TRUE(milter_signed);
    const std::string by_milter = client->ApplyModifications(headers, mta_body, *result);
    const std::vector<std::string> ids = SignatureIdentity(by_milter);
    ASSERT_EQ(SignatureIdentity(by_cli->output), ids);
    ASSERT_EQ(ids.size(), 2u);
    for (const auto& id : ids) {
      const std::string h = ":" + id.substr(id.find(";h=") + 3) + ":";
      EXPECT_EQ(h.find(":" + c.left_out + ":"), std::string::npos) << id;
      EXPECT_NE(h.find(":to:"), std::string::npos) << id;
    }
    for (const auto& [what, message] : {std::pair{"sign -c", by_cli->output}, std::pair{"milter", by_milter}}) {
      ASSERT_NO_FATAL_FAILURE(ExpectVerifies(message, 2, what));
      ASSERT_NO_FATAL_FAILURE(ExpectMailDkimVerifies(message, what));
    }
  }
}

// What only an MTA can hand over: a name with 8-bit bytes (the parser makes such a line the
// body) and a line break without white space inside a value. Refused, with the reason logged.
TEST_F(SignParityTest, WhatOnlyTheMilterSeesIsRefusedWithItsReason) {
  const std::vector<std::pair<std::vector<Header>, std::string>> cases = {
      {{{"From", " alice@example.test"}, {"Subj\xc3\xa9" "ct", " x"}},
       "header field 2 has no valid name (printable US-ASCII before the colon)"},
      {{{"From", " alice@example.test"}, {"Subject", " x\nBcc: eve@example.net"}},
       "header field 2 (subject) holds a line break not followed by white space: the MTA writes it "
       "out as more lines than one field"},
  };
  for (const auto& [headers, reason] : cases) {
    auto client = Client();
    ASSERT_TRUE(client.has_value()) << client.error().message;
    auto result = client->SendMessage("127.0.0.1", "", headers, "Hello\r\n");
    ASSERT_TRUE(result.has_value()) << result.error().message;
    EXPECT_EQ(result->reply.kind, Reply::Kind::kAccept) << result->reply.ToString();
    EXPECT_TRUE(result->Find(Modification::Kind::kInsertHeader).empty()) << reason;
    ExpectLogged(reason);
  }
}

}  // namespace
}  // namespace dkimrotor::milter

#include "tests/milter/milter_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace dkimrotor::milter::testing {
namespace {

using std::chrono::milliseconds;

constexpr char kMessage[] =
    "From: Alice <alice@example.com>\r\n"
    "To: bob@example.net\r\n"
    "Subject: a test\r\n"
    "\twith a folded line\r\n"
    "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
    "Message-ID: <1@example.com>\r\n"
    "\r\n"
    "Hello.\r\n"
    "\r\n"
    "Bye.\r\n";

ParsedMessage Parsed(std::string_view message) {
  auto parsed = ParseMessage(message);
  EXPECT_TRUE(parsed.has_value()) << parsed.error().message;
  return parsed ? *parsed : ParsedMessage{};
}

// --- Pure parts ----------------------------------------------------------------------------

TEST(SocketAddress, ParsesLibmilterAndPostfixSyntax) {
  auto a = ParseSocketAddress("inet:8891@127.0.0.1");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->kind, SocketAddress::Kind::kInet);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8891);
  EXPECT_EQ(a->ToString(), "inet:8891@127.0.0.1");

  a = ParseSocketAddress("inet6:8891@::1");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->kind, SocketAddress::Kind::kInet6);
  EXPECT_EQ(a->host, "::1");

  a = ParseSocketAddress("inet:localhost:25");  // Postfix's form
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->host, "localhost");
  EXPECT_EQ(a->port, 25);

  a = ParseSocketAddress("inet:[::1]:25");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->kind, SocketAddress::Kind::kInet6);
  EXPECT_EQ(a->host, "::1");

  a = ParseSocketAddress("inet:9000");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->host, "127.0.0.1");

  for (const char* spec : {"unix:/run/m.sock", "local:/run/m.sock", "/run/m.sock"}) {
    a = ParseSocketAddress(spec);
    ASSERT_TRUE(a) << spec << ": " << a.error().message;
    EXPECT_EQ(a->kind, SocketAddress::Kind::kUnix);
    EXPECT_EQ(a->path, "/run/m.sock");
  }
}

TEST(SocketAddress, RejectsWhatNoMilterListensOn) {
  for (const char* spec : {"", "8891", "tcp:8891@127.0.0.1", "inet:@127.0.0.1", "inet:0@127.0.0.1",
                           "inet:65536@127.0.0.1", "inet:x@127.0.0.1", "unix:"}) {
    auto a = ParseSocketAddress(spec);
    EXPECT_FALSE(a.has_value()) << spec;
    if (!a) {
      EXPECT_NE(a.error().message.find("inet:PORT@HOST"), std::string::npos);
    }
  }
  EXPECT_FALSE(ParseSocketAddress("unix:/" + std::string(200, 'x')).has_value());
}

TEST(Message, ParseAndBuildRoundTrip) {
  ParsedMessage m = Parsed(kMessage);
  ASSERT_EQ(m.headers.size(), 5u);
  EXPECT_EQ(m.headers[0].name, "From");
  EXPECT_EQ(m.headers[0].value, " Alice <alice@example.com>");
  EXPECT_EQ(m.headers[2].value, " a test\n\twith a folded line");  // folds as Postfix sends them
  EXPECT_EQ(m.body, "Hello.\r\n\r\nBye.\r\n");
  EXPECT_EQ(BuildMessage(m.headers, m.body, {}, true), kMessage);

  ParsedMessage lf = Parsed("A: 1\nB: 2\n\nbody\n");
  EXPECT_EQ(lf.body, "body\r\n");
  EXPECT_EQ(BuildMessage(lf.headers, lf.body, {}, false), "A: 1\r\nB: 2\r\n\r\nbody\r\n");

  EXPECT_FALSE(ParseMessage("no colon here\r\n\r\nbody").has_value());
  EXPECT_FALSE(ParseMessage(" continuation: first\r\n\r\n").has_value());
}

TEST(Message, BuildAppliesHeaderEdits) {
  ParsedMessage m = Parsed("A: 1\r\nB: 2\r\nA: 3\r\n\r\nbody\r\n");
  EndOfMessageResult r;
  using K = Modification::Kind;
  r.modifications = {
      {K::kInsertHeader, 0, "Top", " t"},    // first field
      {K::kInsertHeader, 2, "Mid", " m"},    // before the second original field (Top counts)
      {K::kInsertHeader, 99, "Low", " l"},   // past the end: appended
      {K::kAddHeader, 0, "End", " e"},
      {K::kChangeHeader, 2, "a", " three"},  // the second "A", case-insensitively
      {K::kChangeHeader, 1, "B", ""},        // deletes
      {K::kChangeHeader, 5, "C", " new"},    // no fifth "C": added
      {K::kChangeHeader, 5, "D", ""},        // nothing to delete
  };
  EXPECT_EQ(BuildMessage(m.headers, m.body, r, true),
            "Top: t\r\nA: 1\r\nMid: m\r\nA: three\r\nLow: l\r\nEnd: e\r\nC: new\r\n\r\nbody\r\n");

  // Without SMFIP_HDR_LEADSPC the MTA supplies the space; a milter's LF folds become CRLF.
  EndOfMessageResult plain;
  plain.modifications = {{K::kInsertHeader, 0, "X", "a\n\tb"}};
  EXPECT_EQ(BuildMessage({}, "", plain, false), "X: a\r\n\tb\r\n\r\n");
  EXPECT_EQ(BuildMessage({}, "", plain, true), "X:a\r\n\tb\r\n\r\n");

  EndOfMessageResult body;
  body.modifications = {{K::kReplaceBody, 0, "", "new "}, {K::kReplaceBody, 0, "", "body\r\n"}};
  EXPECT_EQ(BuildMessage(m.headers, m.body, body, true),
            "A: 1\r\nB: 2\r\nA: 3\r\n\r\nnew body\r\n");
}

// --- Against the null filter ---------------------------------------------------------------

class NullFilterTest : public ::testing::Test {
 protected:
  // Starts the null filter with `flags` on a free port of 127.0.0.1 (or on `socket`).
  void Start(std::vector<std::string> flags = {}, std::string socket = {}) {
    std::string last_error;
    for (int attempt = 0; attempt < 5; ++attempt) {
      std::string spec = socket;
      if (spec.empty()) {
        auto port = FreeTcpPort();
        ASSERT_TRUE(port) << port.error().message;
        spec = "inet:" + std::to_string(*port) + "@127.0.0.1";
      }
      std::vector<std::string> argv = {DKIMROTOR_NULL_FILTER, "--socket", spec};
      argv.insert(argv.end(), flags.begin(), flags.end());
      auto filter = MilterProcess::Start(argv, spec);
      if (filter) {
        filter_ = std::move(*filter);
        return;
      }
      last_error = filter.error().message;  // most likely the port was taken meanwhile
    }
    FAIL() << last_error;
  }

  void TearDown() override {
    if (!filter_) return;
    std::string status = filter_->Stop();
    EXPECT_EQ(status, "exit 0") << "the null filter did not stop cleanly; its output:\n"
                                << filter_->Log();
  }

  MilterClient::Options Options() const {
    MilterClient::Options o;
    o.socket = filter_->socket();
    o.timeout = milliseconds(5000);
    return o;
  }

  MessageSpec Spec() const {
    MessageSpec spec;
    ParsedMessage m = Parsed(kMessage);
    spec.headers = m.headers;
    spec.body = m.body;
    spec.auth = "alice";
    return spec;
  }

  // A whole message that must come back accepted with the filter's header first.
  void ExpectSigned(MilterClient& client, const MessageSpec& spec) {
    auto result = client.SendMessage(spec);
    ASSERT_TRUE(result) << result.error().message;
    EXPECT_EQ(result->reply.kind, Reply::Kind::kAccept) << result->reply.ToString();
    EXPECT_EQ(result->command, SMFIC_BODYEOB);
    ASSERT_EQ(result->modifications.size(), 1u);
    const Modification& m = result->modifications[0];
    EXPECT_EQ(m.kind, Modification::Kind::kInsertHeader);
    EXPECT_EQ(m.index, 0u);
    EXPECT_EQ(m.name, "X-Null-Filter");
    std::string built = client.ApplyModifications(spec.headers, spec.body, *result);
    std::string expected =
        "X-Null-Filter: yes\r\n" + BuildMessage(spec.headers, spec.body, {}, true);
    // Compared in two steps: gtest's diff of two large strings takes seconds.
    EXPECT_EQ(built.substr(0, 200), expected.substr(0, 200));
    EXPECT_TRUE(built == expected) << built.size() << " bytes built, " << expected.size()
                                   << " expected";
  }

  std::unique_ptr<MilterProcess> filter_;
};

TEST_F(NullFilterTest, NegotiatesLikeAMinimalSigner) {
  ASSERT_NO_FATAL_FAILURE(Start());
  auto client = MilterClient::Connect(Options());
  ASSERT_TRUE(client) << client.error().message;
  const Negotiation& n = client->negotiation();
  EXPECT_EQ(n.version, 6u);
  EXPECT_EQ(n.actions, smfif::kAddHeaders);
  EXPECT_TRUE(n.Has(SMFIP_HDR_LEADSPC));
  for (uint32_t skipped : {SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NORCPT, SMFIP_NOUNKNOWN,
                           SMFIP_NR_HDR, SMFIP_NR_BODY, SMFIP_SKIP})
    EXPECT_TRUE(n.Has(skipped)) << "protocol " << std::hex << n.protocol << " lacks " << skipped;
  for (uint32_t needed : {SMFIP_NOMAIL, SMFIP_NODATA, SMFIP_NOHDRS, SMFIP_NOEOH, SMFIP_NOBODY,
                          SMFIP_NR_MAIL, SMFIP_NR_DATA})
    EXPECT_FALSE(n.Has(needed)) << "protocol " << std::hex << n.protocol << " has " << needed;
  EXPECT_TRUE(n.macro_lists.empty());
  EXPECT_EQ(client->stats().replies, 1u);
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, InsertsItsHeaderFirstAndAccepts) {
  ASSERT_NO_FATAL_FAILURE(Start());
  std::vector<std::pair<char, std::chrono::nanoseconds>> replies;
  MilterClient::Options options = Options();
  options.on_reply = [&](char command, std::chrono::nanoseconds took) {
    replies.emplace_back(command, took);
  };
  auto client = MilterClient::Connect(options);
  ASSERT_TRUE(client) << client.error().message;
  MessageSpec spec = Spec();
  auto result = client->SendMessage(spec);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->reply.kind, Reply::Kind::kAccept);
  ASSERT_EQ(result->modifications.size(), 1u);
  EXPECT_EQ(result->modifications[0].value, " yes");  // leading space negotiated: sent as is
  EXPECT_EQ(client->ApplyModifications(spec.headers, spec.body, *result),
            std::string("X-Null-Filter: yes\r\n") + kMessage);
  EXPECT_GT(result->elapsed.count(), 0);

  // Negotiation, MAIL, DATA, end of headers and end of message are answered; connect, helo
  // and rcpt are skipped, headers and body go unanswered.
  std::string answered;
  for (const auto& r : replies) answered += r.first;
  const std::string expected = {SMFIC_OPTNEG, SMFIC_MAIL, SMFIC_DATA, SMFIC_EOH, SMFIC_BODYEOB};
  EXPECT_EQ(answered, expected);
  const MilterClient::Stats& stats = client->stats();
  EXPECT_EQ(stats.replies, 5u);
  EXPECT_EQ(stats.packets_received, 6u);  // + the inserted header
  // optneg; macros for connect, mail, rcpt, data, eoh and eom (sent even for the skipped
  // events, as Postfix does); mail; data; 5 headers; eoh; body; eom
  EXPECT_EQ(stats.packets_sent, 17u);
  EXPECT_LT(stats.writes, stats.packets_sent);  // packets without replies were coalesced
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, TwoMessagesOnOneConnection) {
  ASSERT_NO_FATAL_FAILURE(Start());
  auto client = MilterClient::Connect(Options());
  ASSERT_TRUE(client) << client.error().message;
  ASSERT_NO_FATAL_FAILURE(ExpectSigned(*client, Spec()));
  MessageSpec second = Spec();
  second.auth.clear();
  second.body = "Another body.\r\n";
  ASSERT_NO_FATAL_FAILURE(ExpectSigned(*client, second));
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, AbortMidBodyThenAnotherMessage) {
  ASSERT_NO_FATAL_FAILURE(Start());
  auto client = MilterClient::Connect(Options());
  ASSERT_TRUE(client) << client.error().message;
  MilterClient& c = *client;
  auto r = c.Connect("client.example", Family::kInet, 4000, "192.0.2.1");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, Reply::Kind::kNotSent);
  r = c.MailFrom({"<a@example.com>"}, {{"{auth_authen}", "alice"}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, Reply::Kind::kContinue);
  r = c.RcptTo({"<b@example.net>"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, Reply::Kind::kNotSent);
  r = c.Header("From", " a@example.com");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, Reply::Kind::kNoReply);
  r = c.EndOfHeaders();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, Reply::Kind::kContinue);
  r = c.Body(std::string(100000, 'x'), 4096);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, Reply::Kind::kNoReply);
  auto aborted = c.Abort();
  ASSERT_TRUE(aborted) << aborted.error().message;
  ASSERT_NO_FATAL_FAILURE(ExpectSigned(c, Spec()));
  // And an abort right after MAIL.
  r = c.MailFrom({"<a@example.com>"});
  ASSERT_TRUE(r) << r.error().message;
  aborted = c.Abort();
  ASSERT_TRUE(aborted) << aborted.error().message;
  ASSERT_NO_FATAL_FAILURE(ExpectSigned(c, Spec()));
  auto quit = c.Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, AbruptCloseAtEachStageLeavesTheFilterServing) {
  ASSERT_NO_FATAL_FAILURE(Start());
  const std::vector<std::string> stages = {"before negotiation", "after negotiation",
                                           "after MAIL",         "among the headers",
                                           "after EOH",          "mid-body",
                                           "awaiting the end-of-message reply"};
  for (size_t stage = 0; stage < stages.size(); ++stage) {
    SCOPED_TRACE("closed " + stages[stage]);
    MilterClient::Options options = Options();
    options.negotiate = stage > 0;
    auto client = MilterClient::Connect(options);
    ASSERT_TRUE(client) << client.error().message;
    MilterClient& c = *client;
    if (stage >= 2) {
      ASSERT_TRUE(c.MailFrom({"<a@example.com>"}));
    }
    if (stage >= 3) {
      ASSERT_TRUE(c.Header("From", " a@example.com"));
      ASSERT_TRUE(c.Header("Subject", " half"));
    }
    if (stage >= 4) {
      ASSERT_TRUE(c.EndOfHeaders());
    }
    if (stage >= 5) {
      ASSERT_TRUE(c.Body(std::string(70000, 'y')));
    }
    if (stage >= 6) {
      ASSERT_TRUE(c.SendPacket(SMFIC_BODYEOB, {}));
    }
    c.Close();
    EXPECT_FALSE(c.is_open());

    auto next = MilterClient::Connect(Options());
    ASSERT_TRUE(next) << next.error().message;
    ASSERT_NO_FATAL_FAILURE(ExpectSigned(*next, Spec()));
    auto quit = next->Quit();
    EXPECT_TRUE(quit) << quit.error().message;
    EXPECT_TRUE(filter_->Running());
  }
}

TEST_F(NullFilterTest, LargeBodiesInChunksOfAnySize) {
  ASSERT_NO_FATAL_FAILURE(Start());
  auto client = MilterClient::Connect(Options());
  ASSERT_TRUE(client) << client.error().message;
  MessageSpec spec = Spec();
  spec.body.clear();
  for (int i = 0; i < 8000; ++i) spec.body += "line " + std::to_string(i) + " of a long body\r\n";
  ASSERT_GT(spec.body.size(), 2u * MILTER_CHUNK_SIZE);
  for (size_t chunk : {size_t{MILTER_CHUNK_SIZE}, size_t{1000}, size_t{1}}) {
    SCOPED_TRACE("chunk size " + std::to_string(chunk));
    if (chunk == 1) spec.body.resize(3000);
    spec.chunk_size = chunk;
    uint64_t before = client->stats().packets_sent;
    ASSERT_NO_FATAL_FAILURE(ExpectSigned(*client, spec));
    uint64_t chunks = (spec.body.size() + chunk - 1) / chunk;
    EXPECT_GE(client->stats().packets_sent - before, chunks);
  }
  EXPECT_FALSE(client->Body("x", 0).has_value());
  EXPECT_FALSE(client->Body("x", MILTER_CHUNK_SIZE + 1).has_value());
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, WithoutTheLeadingSpaceOfferTheMtaSuppliesTheSpace) {
  ASSERT_NO_FATAL_FAILURE(Start());
  MilterClient::Options options = Options();
  options.protocol = kPostfixProtocol & ~static_cast<uint32_t>(SMFIP_HDR_LEADSPC);
  auto client = MilterClient::Connect(options);
  ASSERT_TRUE(client) << client.error().message;
  EXPECT_FALSE(client->negotiation().Has(SMFIP_HDR_LEADSPC));
  auto result = client->SendMessage(Spec());
  ASSERT_TRUE(result) << result.error().message;
  ASSERT_EQ(result->modifications.size(), 1u);
  EXPECT_EQ(result->modifications[0].value, "yes");
  EXPECT_EQ(client->ApplyModifications(Spec().headers, Spec().body, *result),
            std::string("X-Null-Filter: yes\r\n") + kMessage);
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, EveryEventIsAnsweredWhenNoReplyIsNotOffered) {
  ASSERT_NO_FATAL_FAILURE(Start());
  MilterClient::Options options = Options();
  options.protocol = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY |
                     SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_SKIP |
                     SMFIP_HDR_LEADSPC;  // a V4-era MTA: no SMFIP_NR_*
  options.coalesce_writes = false;
  auto client = MilterClient::Connect(options);
  ASSERT_TRUE(client) << client.error().message;
  EXPECT_FALSE(client->negotiation().Has(SMFIP_NR_HDR));
  auto r = client->MailFrom({"<a@example.com>"});
  ASSERT_TRUE(r) << r.error().message;
  r = client->Header("From", " a@example.com");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, Reply::Kind::kContinue);
  r = client->EndOfHeaders();
  ASSERT_TRUE(r) << r.error().message;
  r = client->Body("body\r\n");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, Reply::Kind::kContinue);
  auto eom = client->EndOfMessage();
  ASSERT_TRUE(eom) << eom.error().message;
  EXPECT_EQ(eom->reply.kind, Reply::Kind::kAccept);
  EXPECT_EQ(client->stats().writes, client->stats().packets_sent);
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, ProgressKeepsTheClientWaiting) {
  ASSERT_NO_FATAL_FAILURE(Start({"--progress"}));
  auto client = MilterClient::Connect(Options());
  ASSERT_TRUE(client) << client.error().message;
  auto result = client->SendMessage(Spec());
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->progress, 1);
  EXPECT_EQ(result->reply.kind, Reply::Kind::kAccept);
  EXPECT_EQ(result->modifications.size(), 1u);
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, SkipStopsTheBody) {
  ASSERT_NO_FATAL_FAILURE(Start({"--skip-body"}));
  auto client = MilterClient::Connect(Options());
  ASSERT_TRUE(client) << client.error().message;
  EXPECT_FALSE(client->negotiation().Has(SMFIP_NR_BODY));
  MilterClient& c = *client;
  ASSERT_TRUE(c.MailFrom({"<a@example.com>"}));
  ASSERT_TRUE(c.EndOfHeaders());
  uint64_t before = c.stats().packets_sent;
  auto r = c.Body(std::string(5000, 'z'), 1000);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, Reply::Kind::kSkip);
  EXPECT_EQ(c.stats().packets_sent - before, 1u);
  r = c.Body("more\r\n");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, Reply::Kind::kNotSent);
  auto eom = c.EndOfMessage();
  ASSERT_TRUE(eom) << eom.error().message;
  EXPECT_EQ(eom->reply.kind, Reply::Kind::kAccept);
  // The skip lasts one message only.
  ASSERT_TRUE(c.MailFrom({"<a@example.com>"}));
  r = c.Body("again\r\n");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, Reply::Kind::kSkip);
  ASSERT_TRUE(c.Abort());
  auto quit = c.Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, ARejectAtMailEndsTheTransactionNotTheConnection) {
  ASSERT_NO_FATAL_FAILURE(Start({"--mail-reply", "replycode"}));
  auto client = MilterClient::Connect(Options());
  ASSERT_TRUE(client) << client.error().message;
  for (int i = 0; i < 2; ++i) {
    auto result = client->SendMessage(Spec());
    ASSERT_TRUE(result) << result.error().message;
    EXPECT_EQ(result->command, SMFIC_MAIL);
    EXPECT_EQ(result->reply.kind, Reply::Kind::kReplyCode);
    EXPECT_EQ(result->reply.text, "550 5.7.1 null filter says no");
    EXPECT_TRUE(result->modifications.empty());
  }
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, EndOfMessageRepliesOtherThanAccept) {
  ASSERT_NO_FATAL_FAILURE(Start({"--eom-reply", "tempfail"}));
  auto client = MilterClient::Connect(Options());
  ASSERT_TRUE(client) << client.error().message;
  auto result = client->SendMessage(Spec());
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->reply.kind, Reply::Kind::kTempfail);
  EXPECT_EQ(result->modifications.size(), 1u);
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, QuitNewConnectionStartsTheNextSmtpConnection) {
  // Skip nothing and answer everything, but keep the leading space: CONNECT comes again, and
  // the filter must still know what it negotiated. libmilter honours SMFIC_QUIT_NC only in
  // its end-of-message state, which an accept or reject leaves for the HELO state (where it
  // ignores QUIT_NC and then drops the next CONNECT without an answer): so end with continue.
  ASSERT_NO_FATAL_FAILURE(Start({"--protocol", "100000", "--eom-reply", "continue"}));
  auto client = MilterClient::Connect(Options());
  ASSERT_TRUE(client) << client.error().message;
  EXPECT_EQ(client->negotiation().protocol, static_cast<uint32_t>(SMFIP_HDR_LEADSPC));
  for (int connection = 0; connection < 3; ++connection) {
    SCOPED_TRACE("SMTP connection " + std::to_string(connection));
    uint64_t replies = client->stats().replies;
    auto result = client->SendMessage(Spec());
    ASSERT_TRUE(result) << result.error().message;
    EXPECT_EQ(result->reply.kind, Reply::Kind::kContinue);
    // connect, helo, mail, rcpt, data, 5 headers, eoh, body, eom
    EXPECT_EQ(client->stats().replies - replies, 13u);
    ASSERT_EQ(result->modifications.size(), 1u);
    EXPECT_EQ(result->modifications[0].value, " yes");  // the filter kept what it negotiated
    auto quit = client->QuitNewConnection();
    ASSERT_TRUE(quit) << quit.error().message;
  }
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, AStoppedMilterTimesOutInsteadOfHanging) {
  ASSERT_NO_FATAL_FAILURE(Start());
  auto client = MilterClient::Connect(Options());
  ASSERT_TRUE(client) << client.error().message;
  ASSERT_TRUE(client->MailFrom({"<a@example.com>"}));
  ASSERT_TRUE(filter_->Pause());
  auto start = std::chrono::steady_clock::now();
  auto eom = client->EndOfMessage({}, milliseconds(300));
  auto took = std::chrono::steady_clock::now() - start;
  filter_->Resume();
  ASSERT_FALSE(eom.has_value());
  EXPECT_NE(eom.error().message.find("timed out"), std::string::npos) << eom.error().message;
  EXPECT_NE(eom.error().message.find("SMFIC_BODYEOB"), std::string::npos) << eom.error().message;
  EXPECT_GE(took, milliseconds(300));
  EXPECT_LT(took, milliseconds(3000));
  // Out of step now: later calls fail at once instead of reading a stale reply.
  auto r = client->MailFrom({"<a@example.com>"});
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("unusable"), std::string::npos) << r.error().message;
  client->Close();

  auto next = MilterClient::Connect(Options());
  ASSERT_TRUE(next) << next.error().message;
  ASSERT_NO_FATAL_FAILURE(ExpectSigned(*next, Spec()));
  auto quit = next->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST_F(NullFilterTest, RawPacketsForProtocolTests) {
  ASSERT_NO_FATAL_FAILURE(Start());
  MilterClient::Options options = Options();
  options.negotiate = false;
  auto client = MilterClient::Connect(options);
  ASSERT_TRUE(client) << client.error().message;
  std::string optneg = {0, 0, 0, 6, 0, 0, 0x01, static_cast<char>(0xff), 0, 0x1f,
                        static_cast<char>(0xff), static_cast<char>(0xff)};
  ASSERT_TRUE(client->SendPacket(SMFIC_OPTNEG, optneg));
  auto packet = client->ReadPacket();
  ASSERT_TRUE(packet) << packet.error().message;
  EXPECT_EQ(packet->first, SMFIC_OPTNEG);
  EXPECT_EQ(packet->second.size(), 12u);
  client->Close();
}

TEST_F(NullFilterTest, OneClientPerThread) {
  ASSERT_NO_FATAL_FAILURE(Start());
  constexpr int kThreads = 4;
  constexpr int kMessages = 25;
  std::atomic<int> accepted{0};
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto client = MilterClient::Connect(Options());
      if (!client) {
        errors[t] = client.error().message;
        return;
      }
      for (int i = 0; i < kMessages; ++i) {
        auto result = client->SendMessage(Spec());
        if (!result) {
          errors[t] = result.error().message;
          return;
        }
        if (result->reply.kind == Reply::Kind::kAccept && result->modifications.size() == 1)
          accepted.fetch_add(1);
      }
      if (auto quit = client->Quit(); !quit) errors[t] = quit.error().message;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(errors[t], "") << "thread " << t;
  EXPECT_EQ(accepted.load(), kThreads * kMessages);
}

TEST_F(NullFilterTest, QuickAckIsSetAgainAfterEveryRead) {
  ASSERT_NO_FATAL_FAILURE(Start());
  MilterClient::Options options = Options();
  options.tcp_quickack = true;
  auto client = MilterClient::Connect(options);
  ASSERT_TRUE(client) << client.error().message;
  const int fd = client->FdForTesting();
  auto quickack = [fd] {
    int on = -1;
    socklen_t len = sizeof on;
    EXPECT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &on, &len), 0);
    return on;
  };
  EXPECT_EQ(quickack(), 1);
  for (int i = 0; i < 3; ++i) {
    // Delayed-ACK mode, which the kernel enters by itself once replies follow requests
    // closely: the client must turn quick ACKs on again when the milter's answer arrives.
    int off = 0;
    ASSERT_EQ(::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &off, sizeof off), 0);
    ASSERT_EQ(quickack(), 0);
    ASSERT_NO_FATAL_FAILURE(ExpectSigned(*client, Spec()));
    EXPECT_EQ(quickack(), 1) << "after message " << i;
  }
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

TEST(MilterClient, RefusedConnectionIsAnError) {
  auto port = FreeTcpPort();
  ASSERT_TRUE(port) << port.error().message;
  MilterClient::Options options;
  options.socket = "inet:" + std::to_string(*port) + "@127.0.0.1";
  auto client = MilterClient::Connect(options);
  ASSERT_FALSE(client.has_value());
  EXPECT_NE(client.error().message.find("refused"), std::string::npos) << client.error().message;
}

TEST(MilterClient, SilentPeerTimesOutInNegotiation) {
  // A socket that listens but never answers: the kernel completes the connection.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sin;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  MilterClient::Options options;
  options.socket = "inet:" + std::to_string(ntohs(sin.sin_port)) + "@127.0.0.1";
  options.timeout = milliseconds(200);
  auto start = std::chrono::steady_clock::now();
  auto client = MilterClient::Connect(options);
  auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  ASSERT_FALSE(client.has_value());
  EXPECT_NE(client.error().message.find("timed out"), std::string::npos) << client.error().message;
  EXPECT_LT(took, milliseconds(3000));
}

// --- On the wire ---------------------------------------------------------------------------

// A scripted milter in a thread: answers the negotiation with `protocol`, continue to every
// command that wants a reply, and "h" + accept at end of message; records every packet.
class FakeMilter {
 public:
  explicit FakeMilter(uint32_t protocol) : protocol_(protocol) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sin), &len) != 0 ||
        ::listen(listen_fd_, 1) != 0)
      return;
    socket_ = "inet:" + std::to_string(ntohs(sin.sin_port)) + "@127.0.0.1";
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeMilter() {
    if (thread_.joinable()) thread_.join();
    ::close(listen_fd_);
  }
  const std::string& socket() const { return socket_; }
  // Waits for the client to quit or go away, then returns what it sent.
  std::vector<std::pair<char, std::string>> Packets() {
    if (thread_.joinable()) thread_.join();
    return packets_;
  }

 private:
  void Serve() {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return;  // a test that never connects must not hang
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto read_exact = [&](char* out, size_t n) {
      while (n > 0) {
        ssize_t got = ::recv(fd, out, n, 0);
        if (got <= 0) return false;
        out += got;
        n -= static_cast<size_t>(got);
      }
      return true;
    };
    auto reply = [&](char code, const std::string& data) {
      std::string packet(4, '\0');
      uint32_t len = htonl(static_cast<uint32_t>(data.size() + 1));
      std::memcpy(packet.data(), &len, 4);
      packet += code;
      packet += data;
      return ::send(fd, packet.data(), packet.size(), MSG_NOSIGNAL) ==
             static_cast<ssize_t>(packet.size());
    };
    for (;;) {
      char head[5];
      if (!read_exact(head, 5)) break;
      uint32_t len;
      std::memcpy(&len, head, 4);
      std::string data(ntohl(len) - 1, '\0');
      if (!data.empty() && !read_exact(data.data(), data.size())) break;
      char cmd = head[4];
      packets_.emplace_back(cmd, data);
      bool ok = true;
      switch (cmd) {
        case SMFIC_OPTNEG: {
          std::string opts;
          for (uint32_t v : {6u, smfif::kAddHeaders, protocol_}) {
            uint32_t n = htonl(v);
            opts.append(reinterpret_cast<const char*>(&n), 4);
          }
          ok = reply(SMFIC_OPTNEG, opts);
          break;
        }
        case SMFIC_MACRO:
        case SMFIC_ABORT:
        case SMFIC_QUIT_NC:
          break;
        case SMFIC_QUIT:
          ::close(fd);
          return;
        case SMFIC_HEADER:
          if (!(protocol_ & SMFIP_NR_HDR)) ok = reply(SMFIR_CONTINUE, "");
          break;
        case SMFIC_BODY:
          if (!(protocol_ & SMFIP_NR_BODY)) ok = reply(SMFIR_CONTINUE, "");
          break;
        case SMFIC_BODYEOB:
          ok = reply(SMFIR_ADDHEADER, std::string("X-Fake\0folded\n\tvalue\0", 21)) &&
               reply(SMFIR_ACCEPT, "");
          break;
        default:
          ok = reply(SMFIR_CONTINUE, "");
      }
      if (!ok) break;
    }
    ::close(fd);
  }

  uint32_t protocol_;
  int listen_fd_ = -1;
  std::string socket_;
  std::thread thread_;
  std::vector<std::pair<char, std::string>> packets_;
};

std::string U32(uint32_t v) {
  uint32_t n = htonl(v);
  return std::string(reinterpret_cast<const char*>(&n), 4);
}

TEST(MilterClientWire, SendsWhatPostfixSends) {
  FakeMilter fake(SMFIP_NR_HDR | SMFIP_NR_BODY | SMFIP_NORCPT);  // no leading space
  ASSERT_FALSE(fake.socket().empty());
  MilterClient::Options options;
  options.socket = fake.socket();
  auto client = MilterClient::Connect(options);
  ASSERT_TRUE(client) << client.error().message;
  MessageSpec spec;
  spec.client_ip = "192.0.2.10";
  spec.client_port = 1234;
  spec.auth = "alice";
  spec.queue_id = "QID";
  spec.headers = {{"Subject", " a test\r\n\twith a fold"}, {"X-Tab", "\tvalue"}};
  spec.body = std::string(70000, 'b');
  auto result = client->SendMessage(spec);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->reply.kind, Reply::Kind::kAccept);
  EXPECT_EQ(client->ApplyModifications(spec.headers, "body\r\n", *result),
            "Subject: a test\r\n\twith a fold\r\nX-Tab:\tvalue\r\nX-Fake: folded\r\n\tvalue\r\n"
            "\r\nbody\r\n");
  auto quit = client->Quit();
  ASSERT_TRUE(quit) << quit.error().message;

  using namespace std::string_literals;
  const std::vector<std::pair<char, std::string>> want = {
      {SMFIC_OPTNEG, U32(6) + U32(0x1ff) + U32(0x1fffff)},
      {SMFIC_MACRO, "Cj\0mx.example\0{daemon_name}\0dkimrotor-test\0{daemon_addr}\0" "127.0.0.1\0"
                    "v\0Postfix 3.7\0_\0client.example [192.0.2.10]\0"s},
      {SMFIC_CONNECT, "client.example\0" "4\x04\xd2" "192.0.2.10\0"s},
      {SMFIC_HELO, "client.example\0"s},
      {SMFIC_MACRO, "Mi\0QID\0{mail_addr}\0sender@example.com\0{auth_type}\0PLAIN\0"
                    "{auth_authen}\0alice\0"s},
      {SMFIC_MAIL, "<sender@example.com>\0"s},
      {SMFIC_MACRO, "Ri\0QID\0{rcpt_addr}\0rcpt@example.net\0"s},  // RCPT itself skipped
      {SMFIC_MACRO, "Ti\0QID\0"s},
      {SMFIC_DATA, ""},
      {SMFIC_HEADER, "Subject\0a test\n\twith a fold\0"s},  // one space eaten, LF folds
      {SMFIC_HEADER, "X-Tab\0\tvalue\0"s},                  // a tab is not eaten
      {SMFIC_MACRO, "Ni\0QID\0"s},
      {SMFIC_EOH, ""},
      {SMFIC_BODY, std::string(65535, 'b')},
      {SMFIC_BODY, std::string(70000 - 65535, 'b')},
      {SMFIC_MACRO, "Ei\0QID\0"s},
      {SMFIC_BODYEOB, ""},
      {SMFIC_QUIT, ""},
  };
  auto got = fake.Packets();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].first, want[i].first) << "packet " << i;
    EXPECT_EQ(got[i].second, want[i].second) << "packet " << i << " ('" << want[i].first << "')";
  }
}

// --- Unix socket ---------------------------------------------------------------------------

class NullFilterUnixTest : public NullFilterTest {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/dkimrotor-milter-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    NullFilterTest::TearDown();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_;
};

TEST_F(NullFilterUnixTest, ServesOnAUnixSocket) {
  ASSERT_NO_FATAL_FAILURE(Start({}, "unix:" + dir_ + "/milter.sock"));
  auto client = MilterClient::Connect(Options());
  ASSERT_TRUE(client) << client.error().message;
  EXPECT_TRUE(client->negotiation().Has(SMFIP_HDR_LEADSPC));
  MessageSpec spec = Spec();
  spec.client_ip = "2001:db8::1";
  ASSERT_NO_FATAL_FAILURE(ExpectSigned(*client, spec));
  ASSERT_TRUE(client->MailFrom({"<a@example.com>"}));
  ASSERT_TRUE(client->Body("partial"));
  client->Close();

  auto next = MilterClient::Connect(Options());
  ASSERT_TRUE(next) << next.error().message;
  ASSERT_NO_FATAL_FAILURE(ExpectSigned(*next, Spec()));
  ASSERT_NO_FATAL_FAILURE(ExpectSigned(*next, Spec()));
  auto quit = next->Quit();
  EXPECT_TRUE(quit) << quit.error().message;
}

}  // namespace
}  // namespace dkimrotor::milter::testing

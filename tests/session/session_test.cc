#include "session/session.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "session/signing_service.h"
#include "signer/message_parser.h"
#include "signer/private_key.h"
#include "signer/public_key.h"
#include "signer/signing_key.h"
#include "signer/verifier.h"

namespace dkimrotor::session {
namespace {

using keystore::SigningSnapshot;

sockaddr_in V4(const char* ip) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

// Ed25519 keys: generated in microseconds, so each test makes its own.
class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    settings_ = MakeSettings();
    for (const char* selector : {"s1", "s2"}) AddKey("example.com", selector);
    AddKey("parent.org", "p1");
    Publish();
    service_ = std::make_unique<SigningService>(&holder_, settings_, nullptr, nullptr);
  }

  static std::shared_ptr<Settings> MakeSettings() {
    auto s = std::make_shared<Settings>();
    s->policy = SigningPolicy::Create({util::Cidr::Parse("10.0.0.0/8").value()}, /*sign_authenticated=*/true).value();
    s->domains = {{"example.com", false}, {"parent.org", true}, {"sub.parent.org", false}};
    return s;
  }

  void AddKey(const std::string& domain, const std::string& selector) {
    auto key = signer::PrivateKey::Generate(signer::Algorithm::kEd25519Sha256, 256).value();
    public_keys_[selector] = key->dkim_public_key();
    keys_[domain].push_back(signer::SigningKey::Create({domain, selector, key, {}}).value());
  }

  void Publish() {
    std::map<std::string, std::vector<SigningSnapshot::KeyList>, std::less<>> by_domain;
    for (const auto& [domain, list] : keys_) by_domain[domain].push_back(list);
    by_domain["sub.parent.org"].push_back({});  // configured, but no active key yet
    holder_.Store(std::make_shared<const SigningSnapshot>(std::move(by_domain), ++generation_));
  }

  // Runs one message through a session from an internal client.
  Verdict Run(const std::string& message, SigningService* service = nullptr) {
    service = service ? service : service_.get();
    const sockaddr_in client = V4("10.1.2.3");
    auto start = service->Begin({reinterpret_cast<const sockaddr*>(&client), ""});
    if (!start.session) return start.verdict;
    auto end = signer::FindEndOfHeaders(message, /*at_eof=*/true);
    const size_t header_bytes = end ? end->header_bytes : message.size();
    auto fields = signer::ParseHeaderBlock(std::string_view(message).substr(0, header_bytes));
    if (!fields) return Verdict{};
    for (const auto& f : *fields) start.session->AddHeader(f.name, f.value);
    if (auto refused = start.session->EndOfHeaders()) return *refused;
    if (end) start.session->AddBody(std::string_view(message).substr(end->body_start));
    return start.session->Finish([](const std::vector<std::string>&) { return util::Ok(); });
  }

  // Verifies `signatures` over `message` with the keys made above.
  void ExpectVerifies(const Verdict& v, const std::string& message) {
    ASSERT_EQ(v.outcome, Outcome::kSigned) << v.reason;
    std::string signed_message;
    for (const auto& s : v.signatures) signed_message += s + "\r\n";
    signed_message += message;
    signer::MessageVerifier verifier([&](std::string_view, std::string_view selector, signer::Algorithm) {
      return signer::PublicKey::FromDkim(signer::Algorithm::kEd25519Sha256, public_keys_[std::string(selector)]);
    });
    auto end = signer::FindEndOfHeaders(signed_message).value();
    auto fields = signer::ParseHeaderBlock(std::string_view(signed_message).substr(0, end.header_bytes));
    ASSERT_TRUE(fields.has_value());
    for (auto& f : *fields) verifier.AddHeader(std::move(f));
    verifier.EndOfHeaders();
    verifier.AddBody(std::string_view(signed_message).substr(end.body_start));
    auto verdicts = verifier.Finish();
    ASSERT_EQ(verdicts.size(), v.signatures.size());
    for (const auto& r : verdicts) EXPECT_TRUE(r.status.has_value()) << r.status.error().message;
  }

  std::shared_ptr<Settings> settings_;
  std::map<std::string, SigningSnapshot::KeyList> keys_;
  std::map<std::string, std::string> public_keys_;
  keystore::SnapshotHolder holder_;
  uint64_t generation_ = 0;
  std::unique_ptr<SigningService> service_;
};

const std::string kMessage = "From: Alice <alice@example.com>\r\nSubject: hi\r\n\r\nHello.\r\n";

TEST_F(SessionTest, SignsMailFromAnInternalHostAndItVerifies) {
  Verdict v = Run(kMessage);
  ExpectVerifies(v, kMessage);
  EXPECT_EQ(v.domain, "example.com");
  EXPECT_EQ(v.refusal, Refusal::kNone);
  EXPECT_EQ(service_->counters().signed_messages.load(), 1u);
  EXPECT_EQ(service_->counters().signatures.load(), 1u);
}

TEST_F(SessionTest, ActiveKeysTakeTurns) {
  std::vector<std::string> selectors;
  for (int i = 0; i < 4; ++i) {
    Verdict v = Run(kMessage);
    ASSERT_EQ(v.outcome, Outcome::kSigned);
    selectors.push_back(v.signatures[0].find("s=s1;") != std::string::npos ? "s1" : "s2");
  }
  EXPECT_EQ(selectors, (std::vector<std::string>{"s1", "s2", "s1", "s2"}));
}

TEST_F(SessionTest, MailFromOutsideIsNeverSignedButAuthenticatedMailIs) {
  const sockaddr_in outside = V4("192.0.2.1");
  auto start = service_->Begin({reinterpret_cast<const sockaddr*>(&outside), ""});
  EXPECT_EQ(start.session, nullptr);
  EXPECT_EQ(start.verdict.refusal, Refusal::kNotInternal);
  EXPECT_EQ(start.verdict.outcome, Outcome::kUnsigned);
  EXPECT_EQ(service_->counters().unsigned_messages.load(), 1u);
  auto authenticated = service_->Begin({reinterpret_cast<const sockaddr*>(&outside), "alice"});
  EXPECT_NE(authenticated.session, nullptr);
}

TEST_F(SessionTest, BadMessagesAreRefusedWithTheirReason) {
  const std::map<std::string, std::string> cases = {
      {"Subject: no from\r\n\r\nx\r\n", "no From header"},
      {"From: a@example.com\r\nFrom: b@example.com\r\n\r\nx\r\n", "2 From headers"},
      {"From: a@example.net\r\n\r\nx\r\n", "From domain example.net is not configured"},
      {"From: a@mail.example.com\r\n\r\nx\r\n", "From domain mail.example.com is not configured"},
      {"From: undisclosed\r\n\r\nx\r\n", ""},
  };
  for (const auto& [message, reason] : cases) {
    Verdict v = Run(message);
    EXPECT_EQ(v.refusal, Refusal::kBadMessage) << message;
    EXPECT_EQ(v.outcome, Outcome::kUnsigned) << message;  // on_bad_message = accept
    if (!reason.empty()) {
      EXPECT_EQ(v.reason, reason);
    }
    EXPECT_TRUE(v.signatures.empty());
  }
  EXPECT_EQ(service_->counters().unsigned_messages.load(), cases.size());
}

TEST_F(SessionTest, AFieldWithoutAValidNameIsRefused) {
  const sockaddr_in client = V4("10.0.0.1");
  auto start = service_->Begin({reinterpret_cast<const sockaddr*>(&client), ""});
  start.session->AddHeader("From", " a@example.com");
  start.session->AddHeader("no colon here", "");
  auto refused = start.session->EndOfHeaders();
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->refusal, Refusal::kBadMessage);
  EXPECT_NE(refused->reason.find("header field 2"), std::string::npos) << refused->reason;
}

// The milter hands names and values over one by one; the same rules as the parser's apply.
TEST_F(SessionTest, MalformedHeaderBytesAreRefusedOrLeftOutOfH) {
  const sockaddr_in client = V4("10.0.0.1");
  auto refused_for = [&](std::vector<std::pair<std::string, std::string>> fields) {
    auto start = service_->Begin({reinterpret_cast<const sockaddr*>(&client), ""});
    for (const auto& [name, value] : fields) start.session->AddHeader(name, value);
    auto refused = start.session->EndOfHeaders();
    return refused ? refused->reason : std::string("signed");
  };
  EXPECT_EQ(refused_for({{"From", " a@example.com"}, {"Subj\xe9" "ct", " x"}}),
            "header field 2 has no valid name (printable US-ASCII before the colon)");
  EXPECT_EQ(refused_for({{"From", "\r a@example.com"}}),
            "the From field holds a bare CR, which verifiers canonicalize differently; From must be signed");
  EXPECT_EQ(refused_for({{"From", " a@example.com"}, {"Subject", " x\r\nFrom: b@example.com"}}),
            "header field 2 (subject) holds a line break not followed by white space: the MTA "
            "writes it out as more lines than one field");
  EXPECT_EQ(refused_for({{"From", " a@example.com"}, {"Subject", " x\rSubject: y"}}), "signed");

  const std::string message = "From: a@example.com\r\nSubject: x\rSubject: y\r\nTo: b@example.net\r\n\r\nHi.\r\n";
  Verdict v = Run(message);
  ExpectVerifies(v, message);
  ASSERT_EQ(v.signatures.size(), 1u);
  EXPECT_EQ(v.signatures[0].find("subject"), std::string::npos) << v.signatures[0];
}

TEST_F(SessionTest, HeaderLimitsRefuseTheMessageAndStopKeepingFields) {
  auto settings = MakeSettings();
  settings->max_header_fields = 100;
  settings->max_header_bytes = 64 * 1024;
  SigningService service(&holder_, settings, nullptr, nullptr);
  auto message_with = [](int fields, size_t value_size) {
    std::string m = "From: a@example.com\r\n";
    for (int i = 1; i < fields; ++i) m += "X-Field: " + std::string(value_size, 'v') + "\r\n";
    return m + "\r\nHi.\r\n";
  };
  const std::string at_limit = message_with(100, 10);
  ExpectVerifies(Run(at_limit, &service), at_limit);

  Verdict too_many = Run(message_with(101, 10), &service);
  EXPECT_EQ(too_many.refusal, Refusal::kBadMessage);
  EXPECT_EQ(too_many.reason, "the header has more than 100 fields (signing.max_header_fields)");

  Verdict too_large = Run(message_with(10, 8000), &service);
  EXPECT_EQ(too_large.refusal, Refusal::kBadMessage);
  EXPECT_EQ(too_large.reason, "the header has more than 65536 bytes (signing.max_header_bytes)");
  EXPECT_TRUE(too_large.signatures.empty());
}

TEST_F(SessionTest, SubdomainsOnlyWhereConfiguredAndTheLongestMatchWins) {
  Verdict sub = Run("From: a@Deep.Parent.ORG\r\n\r\nx\r\n");
  ASSERT_EQ(sub.outcome, Outcome::kSigned) << sub.reason;
  EXPECT_EQ(sub.domain, "parent.org");
  // sub.parent.org is configured itself (no subdomains) and has no key: an error, not parent.org.
  Verdict own = Run("From: a@sub.parent.org\r\n\r\nx\r\n");
  EXPECT_EQ(own.refusal, Refusal::kError);
  EXPECT_EQ(own.outcome, Outcome::kTempfail);  // on_error = tempfail
  EXPECT_EQ(own.reason, "sub.parent.org has no active key");
}

TEST_F(SessionTest, AnswersFollowTheSettings) {
  auto strict = MakeSettings();
  strict->on_bad_message = OnBadMessage::kReject;
  strict->on_error = OnError::kAccept;
  service_->SwapSettings(strict);
  EXPECT_EQ(Run("Subject: x\r\n\r\n").outcome, Outcome::kReject);
  EXPECT_EQ(Run("From: a@sub.parent.org\r\n\r\nx\r\n").outcome, Outcome::kUnsigned);
  strict = MakeSettings();
  strict->on_bad_message = OnBadMessage::kTempfail;
  service_->SwapSettings(strict);
  EXPECT_EQ(Run("Subject: x\r\n\r\n").outcome, Outcome::kTempfail);
  EXPECT_EQ(service_->counters().rejected_messages.load(), 1u);
  EXPECT_EQ(service_->counters().tempfailed_messages.load(), 1u);
}

TEST_F(SessionTest, AMessageKeepsTheSettingsAndKeysItBeganWith) {
  const sockaddr_in client = V4("10.0.0.1");
  auto start = service_->Begin({reinterpret_cast<const sockaddr*>(&client), ""});
  ASSERT_NE(start.session, nullptr);
  auto none = MakeSettings();
  none->domains.clear();
  service_->SwapSettings(none);
  holder_.Store(std::make_shared<const SigningSnapshot>(
      std::map<std::string, std::vector<SigningSnapshot::KeyList>, std::less<>>{}, 99));
  start.session->AddHeader("From", " a@example.com");
  EXPECT_FALSE(start.session->EndOfHeaders().has_value());
  Verdict v = start.session->Finish([](const std::vector<std::string>&) { return util::Ok(); });
  EXPECT_EQ(v.outcome, Outcome::kSigned) << v.reason;
  EXPECT_EQ(Run(kMessage).refusal, Refusal::kBadMessage);  // a new message sees the new settings
}

TEST_F(SessionTest, XEqualsTPlusTheLifetimeAndOverridesWin) {
  auto with_lifetime = MakeSettings();
  with_lifetime->signature_lifetime = 3600;
  service_->SwapSettings(with_lifetime);
  auto start = service_->Begin({}, MessageOverrides{std::nullopt, 1000, std::nullopt});
  start.session->AddHeader("From", " a@example.com");
  Verdict v = start.session->Finish([](const std::vector<std::string>&) { return util::Ok(); });
  ASSERT_EQ(v.outcome, Outcome::kSigned) << v.reason;
  EXPECT_NE(v.signatures[0].find("t=1000;"), std::string::npos) << v.signatures[0];
  EXPECT_NE(v.signatures[0].find("x=4600;"), std::string::npos) << v.signatures[0];
  auto forced = service_->Begin({}, MessageOverrides{"parent.org", 5, 10});
  forced.session->AddHeader("From", " a@example.com");
  Verdict f = forced.session->Finish([](const std::vector<std::string>&) { return util::Ok(); });
  ASSERT_EQ(f.outcome, Outcome::kSigned) << f.reason;
  EXPECT_EQ(f.domain, "parent.org");
  EXPECT_NE(f.signatures[0].find("x=15;"), std::string::npos) << f.signatures[0];
}

TEST_F(SessionTest, AFailedDeliveryIsAnErrorNotASignedMessage) {
  const sockaddr_in client = V4("10.0.0.1");
  auto start = service_->Begin({reinterpret_cast<const sockaddr*>(&client), ""});
  start.session->AddHeader("From", " a@example.com");
  Verdict v = start.session->Finish([](const std::vector<std::string>&) {
    return util::Status(util::Err(util::ErrorCode::kIo, "the MTA refused the header"));
  });
  EXPECT_EQ(v.refusal, Refusal::kError);
  EXPECT_EQ(v.outcome, Outcome::kTempfail);
  EXPECT_EQ(service_->counters().signed_messages.load(), 0u);
  EXPECT_EQ(service_->counters().tempfailed_messages.load(), 1u);
}

TEST_F(SessionTest, StoppingRefusesNewMessagesAndCountsThoseInFlight) {
  const sockaddr_in client = V4("10.0.0.1");
  auto open = service_->Begin({reinterpret_cast<const sockaddr*>(&client), ""});
  EXPECT_EQ(service_->messages_in_flight(), 1);
  service_->RefuseNewMessages();
  auto late = service_->Begin({reinterpret_cast<const sockaddr*>(&client), ""});
  EXPECT_EQ(late.session, nullptr);
  EXPECT_EQ(late.verdict.refusal, Refusal::kStopping);
  EXPECT_EQ(late.verdict.outcome, Outcome::kTempfail);
  EXPECT_EQ(service_->WaitForMessagesInFlight(std::chrono::milliseconds(20)), 1);
  open.session.reset();  // aborted: leaves the count, counted as nothing
  EXPECT_EQ(service_->WaitForMessagesInFlight(std::chrono::milliseconds(20)), 0);
  EXPECT_EQ(service_->counters().signed_messages.load(), 0u);
}

}  // namespace
}  // namespace dkimrotor::session

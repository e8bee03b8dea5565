#include "session/signing_service.h"

#include <thread>

#include "session/session.h"
#include "signer/algorithm.h"

namespace dkimrotor::session {

SigningService::SigningService(const keystore::SnapshotHolder* keys, std::shared_ptr<const Settings> settings,
                               std::shared_ptr<spdlog::logger> log, std::shared_ptr<spdlog::logger> audit)
    : keys_(keys), settings_(std::move(settings)), log_(std::move(log)), audit_(std::move(audit)) {}

SigningService::~SigningService() = default;

SigningService::Start SigningService::Begin(const Client& client, MessageOverrides overrides) {
  Start start;
  auto settings = this->settings();
  if (!settings->policy.MaySign(client.address, client.auth_authen)) {
    // From outside and not authenticated: never signed, and not worth a log line each.
    start.verdict = Refuse(*settings, Refusal::kNotInternal, "not from an internal host or an authenticated client");
    counters_.unsigned_messages.fetch_add(1, std::memory_order_relaxed);
    return start;
  }
  if (stopping()) {
    start.verdict = Refuse(*settings, Refusal::kStopping, "the signer is stopping");
    Report("", start.verdict);
    return start;
  }
  start.session.reset(new Session(this, std::move(settings), keys_->Load(), std::move(overrides)));
  return start;
}

Verdict SigningService::Fail(std::string_view id, std::string reason) {
  Verdict v = Refuse(*settings(), Refusal::kError, std::move(reason));
  Report(id, v);
  return v;
}

Verdict SigningService::Refuse(const Settings& settings, Refusal refusal, std::string reason) {
  Verdict v;
  v.refusal = refusal;
  v.reason = std::move(reason);
  switch (refusal) {
    case Refusal::kNone:
    case Refusal::kNotInternal:
      v.outcome = Outcome::kUnsigned;
      break;
    case Refusal::kStopping:
      v.outcome = Outcome::kTempfail;
      break;
    case Refusal::kBadMessage:
      v.outcome = settings.on_bad_message == OnBadMessage::kReject     ? Outcome::kReject
                  : settings.on_bad_message == OnBadMessage::kTempfail ? Outcome::kTempfail
                                                                       : Outcome::kUnsigned;
      break;
    case Refusal::kError:
      v.outcome = settings.on_error == OnError::kAccept ? Outcome::kUnsigned : Outcome::kTempfail;
      break;
  }
  return v;
}

void SigningService::Report(std::string_view id, const Verdict& v) {
  const std::string_view name = id.empty() ? std::string_view("-") : id;
  switch (v.outcome) {
    case Outcome::kSigned: counters_.signed_messages.fetch_add(1, std::memory_order_relaxed); break;
    case Outcome::kUnsigned: counters_.unsigned_messages.fetch_add(1, std::memory_order_relaxed); break;
    case Outcome::kTempfail: counters_.tempfailed_messages.fetch_add(1, std::memory_order_relaxed); break;
    case Outcome::kReject: counters_.rejected_messages.fetch_add(1, std::memory_order_relaxed); break;
  }
  if (v.outcome == Outcome::kSigned) {
    counters_.signatures.fetch_add(v.signatures.size(), std::memory_order_relaxed);
    return;  // the session audits each signature: it knows the keys
  }
  if (!log_) return;
  switch (v.refusal) {
    case Refusal::kBadMessage:
      log_->info("{}: not signed: {}", name, v.reason);
      break;
    case Refusal::kError:
      log_->error("{}: cannot sign: {} ({})", name, v.reason, OutcomeName(v.outcome));
      break;
    default:
      break;
  }
}

int SigningService::WaitForMessagesInFlight(std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int n;
  while ((n = messages_in_flight()) > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return n;
}

}  // namespace dkimrotor::session

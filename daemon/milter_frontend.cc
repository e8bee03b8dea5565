// Every call from daemon/ into milter::Milter; re-point this file when the front end changes.
#include "daemon/milter_frontend.h"

namespace dkimrotor::daemon {

util::Result<std::unique_ptr<MilterFrontend>> MilterFrontend::Create(FrontendOptions options,
                                                                     FrontendSettings settings) {
  milter::MilterOptions o;
  o.socket = options.socket;
  o.socket_mode = options.socket_mode;
  o.keys = options.keys;
  o.log = options.log;
  o.audit = options.audit;
  ASSIGN_OR_RETURN(auto m, milter::Milter::Create(std::move(o), std::move(settings)));
  std::unique_ptr<MilterFrontend> frontend(new MilterFrontend(std::move(m)));
  frontend->log_ = std::move(options.log);
  return frontend;
}

MilterFrontend::~MilterFrontend() { Stop(); }

util::Status MilterFrontend::Listen() { return milter_->Listen(); }

void MilterFrontend::Start(std::function<void()> on_unexpected_exit) {
  server_ = std::thread([this, on_exit = std::move(on_unexpected_exit)] {
    if (auto st = milter_->Run(); !st) log_->error("{}", st.error().message);
    if (!milter_->stopping() && on_exit) on_exit();
  });
}

void MilterFrontend::SwapSettings(FrontendSettings settings) { milter_->SwapSettings(std::move(settings)); }

void MilterFrontend::RefuseNewMessages() { milter_->RefuseNewMessages(); }

int MilterFrontend::MessagesInFlight() const { return milter_->messages_in_flight.load(); }

int MilterFrontend::WaitForMessagesInFlight(std::chrono::milliseconds timeout) const {
  return milter_->WaitForMessagesInFlight(timeout);
}

void MilterFrontend::Stop() {
  if (!server_.joinable()) return;
  milter_->Stop();
  server_.join();
}

uint64_t MilterFrontend::SignedMessages() const { return milter_->signed_messages.load(); }

}  // namespace dkimrotor::daemon

#include "daemon/milter_frontend.h"

namespace dkimrotor::daemon {

util::Result<std::unique_ptr<MilterFrontend>> MilterFrontend::Create(FrontendOptions options) {
  milter::MilterOptions o;
  o.socket = options.socket;
  o.socket_mode = options.socket_mode;
  o.service = options.service;
  o.log = options.log;
  ASSIGN_OR_RETURN(auto m, milter::Milter::Create(std::move(o)));
  std::unique_ptr<MilterFrontend> frontend(new MilterFrontend(std::move(m)));
  frontend->log_ = std::move(options.log);
  return frontend;
}

MilterFrontend::~MilterFrontend() { Stop(); }

util::Status MilterFrontend::Listen() { return milter_->Listen(); }

void MilterFrontend::Start(std::function<void()> on_unexpected_exit) {
  server_ = std::thread([this, on_exit = std::move(on_unexpected_exit)] {
    if (auto st = milter_->Run(); !st) log_->error("{}", st.error().message);
    if (!milter_->stop_requested() && on_exit) on_exit();
  });
}

void MilterFrontend::Stop() {
  if (!server_.joinable()) return;
  milter_->Stop();
  server_.join();
}

}  // namespace dkimrotor::daemon

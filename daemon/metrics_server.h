// Serves `GET /metrics` over HTTP through libmicrohttpd (its own listening thread and a small
// thread pool; no HTTP parsing here). Every other path is 404, every other method 405. The
// page is rendered at each request by the function it was given.
// Owns the libmicrohttpd daemon; Stop() (or the destructor) closes the socket and joins its
// threads. The render function must stay callable until then.
// Thread-safety: Start/Stop from one thread; `render` is called from libmicrohttpd's threads,
// possibly several at once.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "util/result.h"
#include "util/server_address.h"

struct MHD_Daemon;

namespace dkimrotor::daemon {

class MetricsServer {
 public:
  using Render = std::function<std::string()>;

  static util::Result<std::unique_ptr<MetricsServer>> Start(const util::ServerAddress& listen, Render render,
                                                            std::shared_ptr<spdlog::logger> log);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  void Stop();
  // The port it listens on (the configured one, or the one the kernel chose for port 0).
  uint16_t port() const { return port_; }

 private:
  MetricsServer(Render render, std::shared_ptr<spdlog::logger> log) : render_(std::move(render)), log_(std::move(log)) {}

  const Render render_;
  const std::shared_ptr<spdlog::logger> log_;
  MHD_Daemon* mhd_ = nullptr;
  uint16_t port_ = 0;
};

}  // namespace dkimrotor::daemon

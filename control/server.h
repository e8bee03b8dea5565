// The daemon's end of the control channel: a unix stream socket, mode 0600, that only root and
// the daemon's own uid may use (SO_PEERCRED; anyone else is refused and logged). One thread
// accepts; each connection gets a thread of its own (at most kMaxConnections at once, more are
// answered "busy"), reads one request (bounded in size and time), asks the handler, writes the
// answer and closes. Stop() closes the socket, removes its file and joins every thread.
// Owns the socket and its threads; the handler must stay callable until Stop() returns.
// Thread-safety: the handler is called from several threads at once; Stop() and destruction
// from one thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include <spdlog/logger.h>

#include "control/protocol.h"
#include "util/mutex.h"
#include "util/result.h"
#include "util/thread_annotations.h"

namespace dkimrotor::control {

// Who is asking, as the kernel tells it.
struct Peer {
  uid_t uid = 0;
  pid_t pid = 0;
  std::string user;  // the uid's name, or the number
};

using Handler = std::function<Answer(const Request&, const Peer&)>;

struct ServerOptions {
  std::string path;                                  // the socket's file
  Handler handler;
  std::shared_ptr<spdlog::logger> log;
  std::chrono::milliseconds io_timeout{5000};        // to receive the request, and to send the answer
};

class ControlServer {
 public:
  static constexpr int kMaxConnections = 8;

  // Binds (replacing a stale socket file: the keystore lock says no other daemon runs) and
  // starts accepting.
  static util::Result<std::unique_ptr<ControlServer>> Start(ServerOptions options);
  ~ControlServer();  // Stop()
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Stops accepting, waits for the connections being served (bounded by io_timeout and the
  // handler), removes the socket file. Idempotent.
  void Stop();

 private:
  explicit ControlServer(ServerOptions options) : options_(std::move(options)) {}
  void Accept();
  void Serve(int fd);
  void ReapFinished() EXCLUDES(mu_);

  struct Connection {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  const ServerOptions options_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // an eventfd: Stop() wakes the accept loop's poll
  util::Mutex mu_;
  std::list<std::unique_ptr<Connection>> connections_ GUARDED_BY(mu_);
  std::thread acceptor_;
  bool stopped_ = false;
};

}  // namespace dkimrotor::control

// Every read and write is bounded by a poll() deadline, so a peer that sends nothing, or
// never reads its answer, costs a thread for io_timeout at most.
#include "control/server.h"

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <exception>
#include <vector>

namespace dkimrotor::control {
namespace {

std::string UserName(uid_t uid) {
  std::vector<char> buffer(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &pw, buffer.data(), buffer.size(), &found) == 0 && found) return found->pw_name;
  return std::to_string(uid);
}

int MillisecondsLeft(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Reads until the peer shuts down its writing side. Errors say what went wrong, for the answer.
util::Result<std::string> ReadRequest(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string data;
  char buffer[8192];
  while (true) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, MillisecondsLeft(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0)
      return util::Err(util::ErrorCode::kInvalidArgument,
                       "no complete request within " + std::to_string(timeout.count()) +
                           " ms: send one JSON object, then shut down the writing side");
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return util::Err(util::ErrorCode::kIo, std::string("reading the request: ") + std::strerror(errno));
    if (n == 0) return data;
    data.append(buffer, static_cast<size_t>(n));
    if (data.size() > kMaxRequestBytes)
      return util::Err(util::ErrorCode::kInvalidArgument,
                       "request of more than " + std::to_string(kMaxRequestBytes) + " bytes refused");
  }
}

void WriteAll(int fd, const std::string& data, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t sent = 0;
  while (sent < data.size()) {
    pollfd p{fd, POLLOUT, 0};
    const int ready = ::poll(&p, 1, MillisecondsLeft(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return;
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
}

}  // namespace

util::Result<std::unique_ptr<ControlServer>> ControlServer::Start(ServerOptions options) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (options.path.size() >= sizeof address.sun_path)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "control socket path " + options.path + " is longer than a unix socket allows (" +
                         std::to_string(sizeof address.sun_path - 1) + " bytes): use a shorter keystore.directory");
  std::memcpy(address.sun_path, options.path.c_str(), options.path.size() + 1);
  std::unique_ptr<ControlServer> server(new ControlServer(std::move(options)));
  const std::string& path = server->options_.path;
  server->listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (server->listen_fd_ < 0)
    return util::Err(util::ErrorCode::kIo, std::string("control socket: ") + std::strerror(errno));
  ::unlink(path.c_str());  // a stale one from a daemon that did not stop cleanly
  if (::bind(server->listen_fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
    return util::Err(util::ErrorCode::kIo, "binding the control socket " + path + ": " + std::strerror(errno));
  // The keystore directory is the daemon's alone, so nobody can reach the socket before this.
  if (::chmod(path.c_str(), 0600) != 0 || ::listen(server->listen_fd_, 16) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(path.c_str());
    return util::Err(util::ErrorCode::kIo, "control socket " + path + ": " + why);
  }
  server->stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (server->stop_fd_ < 0) {
    ::unlink(path.c_str());
    return util::Err(util::ErrorCode::kIo, std::string("eventfd: ") + std::strerror(errno));
  }
  server->acceptor_ = std::thread([s = server.get()] { s->Accept(); });
  return server;
}

ControlServer::~ControlServer() {
  Stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void ControlServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (acceptor_.joinable()) {
    const uint64_t one = 1;
    if (::write(stop_fd_, &one, sizeof one) < 0) {
      // An eventfd write only fails on overflow; the loop is woken already then.
    }
    acceptor_.join();
  }
  if (listen_fd_ >= 0) ::unlink(options_.path.c_str());
  util::MutexLock lock(&mu_);
  for (auto& c : connections_) c->thread.join();
  connections_.clear();
}

void ControlServer::ReapFinished() {
  util::MutexLock lock(&mu_);
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->done.load()) {
      (*it)->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void ControlServer::Accept() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    const int ready = ::poll(fds, 2, 1000);
    if (ready < 0 && errno != EINTR) {
      options_.log->error("control socket: poll failed, no more commands accepted: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    ReapFinished();
    if (ready <= 0 || !(fds[0].revents & POLLIN)) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    util::MutexLock lock(&mu_);
    if (connections_.size() >= static_cast<size_t>(kMaxConnections)) {
      WriteAll(fd, SerializeAnswer(Failure("busy: " + std::to_string(kMaxConnections) +
                                           " control connections are being served; try again")),
               std::chrono::milliseconds(100));
      ::close(fd);
      continue;
    }
    auto connection = std::make_unique<Connection>();
    Connection* c = connection.get();
    connections_.push_back(std::move(connection));
    c->thread = std::thread([this, fd, c] {
      Serve(fd);
      ::close(fd);
      c->done.store(true);
    });
  }
}

void ControlServer::Serve(int fd) {
  ucred cred{};
  socklen_t length = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
    options_.log->warn("control: a connection without peer credentials refused: {}", std::strerror(errno));
    return;
  }
  Peer peer{cred.uid, cred.pid, UserName(cred.uid)};
  if (cred.uid != 0 && cred.uid != ::geteuid()) {
    options_.log->warn("control: refused {} (uid {}, pid {}): only root and {} (uid {}) may steer the daemon",
                       peer.user, peer.uid, peer.pid, UserName(::geteuid()), ::geteuid());
    WriteAll(fd, SerializeAnswer(Failure("permission denied: only root and the daemon's user may use the control socket")),
             options_.io_timeout);
    return;
  }
  auto text = ReadRequest(fd, options_.io_timeout);
  Answer answer;
  if (!text) {
    answer = Failure(text.error().message);
  } else if (auto request = ParseRequest(*text); !request) {
    answer = Failure(request.error().message);
  } else {
    // nlohmann::json throws on misuse; whatever a handler throws must not end the daemon.
    try {
      answer = options_.handler(*request, peer);
    } catch (const std::exception& e) {
      options_.log->error("control: {} failed unexpectedly: {}", CommandName(request->command), e.what());
      answer = Failure(std::string("internal error: ") + e.what());
    }
  }
  if (!answer.ok)
    options_.log->info("control: {} (uid {}, pid {}): refused: {}", peer.user, peer.uid, peer.pid, answer.error);
  WriteAll(fd, SerializeAnswer(answer), options_.io_timeout);
}

}  // namespace dkimrotor::control

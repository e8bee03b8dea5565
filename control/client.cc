#include "control/client.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace dkimrotor::control {
namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

int MillisecondsLeft(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

}  // namespace

util::Result<Answer> Call(const std::string& path, const Request& request, std::chrono::milliseconds timeout) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path)
    return util::Err(util::ErrorCode::kNotFound, "control socket path " + path + " is too long");
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  Fd s{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (s.fd < 0) return util::Err(util::ErrorCode::kIo, std::string("socket: ") + std::strerror(errno));
  if (::connect(s.fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int e = errno;
    if (e == ENOENT || e == ECONNREFUSED)
      return util::Err(util::ErrorCode::kNotFound, "no daemon answers on " + path);
    return util::Err(util::ErrorCode::kIo, "connecting to the daemon's control socket " + path + ": " + std::strerror(e));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string text = SerializeRequest(request);
  for (size_t sent = 0; sent < text.size();) {
    const ssize_t n = ::send(s.fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return util::Err(util::ErrorCode::kIo, "sending the request to the daemon (" + path + "): " + std::strerror(errno));
    sent += static_cast<size_t>(n);
  }
  ::shutdown(s.fd, SHUT_WR);
  std::string answer;
  char buffer[8192];
  while (true) {
    pollfd p{s.fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, MillisecondsLeft(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0)
      return util::Err(util::ErrorCode::kIo, "the daemon did not answer within " +
                                                 std::to_string(timeout.count() / 1000) +
                                                 " s; the command may still take effect: check `dkimrotor status`");
    const ssize_t n = ::read(s.fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return util::Err(util::ErrorCode::kIo, std::string("reading the daemon's answer: ") + std::strerror(errno));
    if (n == 0) break;
    answer.append(buffer, static_cast<size_t>(n));
    if (answer.size() > 16 * kMaxRequestBytes)
      return util::Err(util::ErrorCode::kIo, "the daemon's answer is implausibly long");
  }
  if (answer.empty())
    return util::Err(util::ErrorCode::kIo,
                     "the daemon closed the control connection without answering (is it stopping?): "
                     "check `dkimrotor status` and the log");
  return ParseAnswer(answer);
}

}  // namespace dkimrotor::control

#include "keystore/key_info.h"

#include <ctime>

namespace dkimrotor::keystore {

std::string_view KeyStateName(KeyState s) {
  switch (s) {
    case KeyState::kPending: return "pending";
    case KeyState::kReady: return "ready";
    case KeyState::kActive: return "active";
    case KeyState::kRetiring: return "retiring";
    case KeyState::kRevoked: return "revoked";
  }
  return "unknown";
}

util::Result<KeyState> ParseKeyState(std::string_view name) {
  for (KeyState s : {KeyState::kPending, KeyState::kReady, KeyState::kActive, KeyState::kRetiring,
                     KeyState::kRevoked})
    if (KeyStateName(s) == name) return s;
  return util::Err(util::ErrorCode::kInvalidArgument, "unknown key state '" + std::string(name) + "'");
}

TimePoint FromUnix(int64_t seconds) { return TimePoint(std::chrono::seconds(seconds)); }

int64_t ToUnix(TimePoint t) { return t.time_since_epoch().count(); }

std::string Rfc3339(TimePoint t) {
  std::time_t tt = static_cast<std::time_t>(ToUnix(t));
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace dkimrotor::keystore

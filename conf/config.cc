#include "conf/config.h"

namespace dkimrotor::conf {

std::vector<util::Cidr> DefaultInternalHosts() {
  return {util::Cidr::Parse("127.0.0.1/32").value(), util::Cidr::Parse("::1/128").value()};
}

std::string_view OnErrorName(OnError v) {
  switch (v) {
    case OnError::kTempfail: return "tempfail";
    case OnError::kAccept: return "accept";
  }
  return "?";
}

std::string_view OnBadMessageName(OnBadMessage v) {
  switch (v) {
    case OnBadMessage::kAccept: return "accept";
    case OnBadMessage::kReject: return "reject";
    case OnBadMessage::kTempfail: return "tempfail";
  }
  return "?";
}

std::string_view LogTargetName(LogTarget v) {
  switch (v) {
    case LogTarget::kStderr: return "stderr";
    case LogTarget::kSyslog: return "syslog";
  }
  return "?";
}

std::string_view LogLevelName(LogLevel v) {
  switch (v) {
    case LogLevel::kTrace: return "trace";
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
    case LogLevel::kCritical: return "critical";
    case LogLevel::kOff: return "off";
  }
  return "?";
}

}  // namespace dkimrotor::conf

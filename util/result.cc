#include "util/result.h"

namespace dkimrotor::util {

const char* ErrorCodeName(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kIo: return "I/O error";
    case ErrorCode::kCrypto: return "crypto error";
    case ErrorCode::kDns: return "DNS error";
    case ErrorCode::kInternal: return "internal error";
  }
  return "unknown error";
}

}  // namespace dkimrotor::util

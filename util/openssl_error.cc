#include "util/openssl_error.h"

#include <string>

#include <openssl/err.h>

namespace dkimrotor::util {

Error OpenSslError(std::string_view what, ErrorCode code) {
  std::string message(what);
  bool first = true;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    message += first ? ": " : "; ";
    message += buf;
    first = false;
  }
  if (first) message += ": no reason given by OpenSSL";
  return Error{code, std::move(message)};
}

}  // namespace dkimrotor::util

// Keys shared by the signer tests. Header-only; safe from any thread.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "util/file.h"

namespace dkimrotor::signer::testing {

// RFC 8463 A.1's RSA key (1024 bits, PKCS#1 DER in base64), wrapped as a traditional PEM.
// Loading it is instant, where generating RSA keys would dominate the suite's run time (ctest
// runs each test in its own process, so even a per-suite key would be made once per test).
inline std::string Rfc8463RsaPem() {
  auto b64 = util::ReadFile(std::string(DKIMROTOR_TEST_DATA) + "/rfc8463/rsa.key.der.b64");
  EXPECT_TRUE(b64.has_value()) << b64.error().message;
  if (!b64) return "";
  std::string text = *b64;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  std::string pem = "-----BEGIN RSA PRIVATE KEY-----\n";
  for (size_t i = 0; i < text.size(); i += 64) pem += text.substr(i, 64) + "\n";
  return pem + "-----END RSA PRIVATE KEY-----\n";
}

}  // namespace dkimrotor::signer::testing

// Opens an OpenDKIM key file for import the way a migration needs: unlike
// util::ReadSecretFile, a key its group or others may read is still read (OpenDKIM without
// RequireSafeKeys signed with it, and its record is in DNS), but the exposure is reported so
// the admin can judge the key. The keystore's copy is written 0600 by the caller.
// Stateless; safe from any thread. Messages never hold key material.
#pragma once

#include <string>

#include "signer/algorithm.h"
#include "util/result.h"

namespace dkimrotor::migrate {

struct KeyFileCheck {
  std::string pem;  // the file's content, for keystore::PrepareImport
  signer::Algorithm algorithm = signer::Algorithm::kRsaSha256;
  int bits = 0;
  // Empty, or why the file's permissions expose the key ("readable by group (mode 0640)...").
  std::string exposure;
};

// kNotFound: no such file; kIo: unreadable or not a regular file; kInvalidArgument: not a
// private key dkimrotor signs with. Each message names the path.
util::Result<KeyFileCheck> CheckKeyFile(const std::string& path);

}  // namespace dkimrotor::migrate

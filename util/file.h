// Small file helpers shared by the modules that touch the file system.
// Stateless; safe from any thread.
#pragma once

#include <string>

#include "util/result.h"

namespace dkimrotor::util {

// Reads a whole file.
Result<std::string> ReadFile(const std::string& path);

// Reads a file that holds a secret (a private key). Refuses, with the fix in the message, a
// file that is not a regular file or that its group or others may read or write (as
// OpenDKIM's RequireSafeKeys does): such a key must be considered leaked.
Result<std::string> ReadSecretFile(const std::string& path);

}  // namespace dkimrotor::util

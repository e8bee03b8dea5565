// Small file helpers shared by the modules that touch the file system.
// Stateless; safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "util/result.h"

namespace dkimrotor::util {

// Reads a whole file.
Result<std::string> ReadFile(const std::string& path);

// Reads a file that holds a secret (a private key). Refuses, with the fix in the message, a
// file that is not a regular file or that its group or others may read or write (as
// OpenDKIM's RequireSafeKeys does): such a key must be considered leaked.
Result<std::string> ReadSecretFile(const std::string& path);

// The folder a path names its file in: "/a/b" -> "/a", "/b" -> "/", "b" -> ".". No file
// system access.
std::string FolderOf(const std::string& path);

// A file's permission bits as chmod takes them: "0640", "1777".
std::string ModeText(unsigned mode);

// Replaces `path` with `data` so that a crash leaves either the old or the new content, never
// a mix: writes a temporary file with an unpredictable name beside it (O_EXCL, so never
// through a planted file or link) with `mode`, fsyncs it, renames it over `path`, and fsyncs
// the folder so the rename itself survives a power loss.
Status WriteFileAtomically(const std::string& path, std::string_view data, unsigned mode);

// Overwrites a file with zeros, fsyncs, removes it and fsyncs its folder: for private keys
// that are no longer needed. A file that does not exist is not an error.
Status DestroyFile(const std::string& path);

}  // namespace dkimrotor::util

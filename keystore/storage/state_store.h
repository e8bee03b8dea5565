// The keystore's state file (state.json in the keystore folder): every key ever made, with its
// state and transition times. Saved crash-safely before a change takes effect anywhere.
// A missing state file is an empty keystore only if the folder holds no key files; a corrupt
// or unreadable one is an error, never "repaired" by starting afresh, which would orphan
// selectors already published in DNS. Algorithms are stored by their DKIM names
// ("rsa-sha256", signer::AlgorithmName) and read back with signer::ParseAlgorithm; an unknown
// name makes the file unreadable.
// Stateless functions; callers serialize access (one rotation engine per keystore, by lock).
#pragma once

#include <string>
#include <vector>

#include "keystore/key_info.h"
#include "util/result.h"

namespace dkimrotor::keystore {

inline constexpr int kStateVersion = 1;

std::string StatePath(const std::string& directory);
std::string KeyPath(const std::string& directory, const KeyInfo& key);

util::Result<std::vector<KeyInfo>> LoadState(const std::string& directory);
util::Status SaveState(const std::string& directory, const std::vector<KeyInfo>& keys);

// The JSON text of a state, and back: shared with `dkimrotor keys --json`.
std::string StateToJson(const std::vector<KeyInfo>& keys);
util::Result<std::vector<KeyInfo>> StateFromJson(const std::string& text, const std::string& source);

}  // namespace dkimrotor::keystore

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

// What a start-up sweep of keys/ found and did (SweepKeyFiles).
struct KeyFileSweep {
  std::vector<std::string> destroyed_revoked;  // private keys of revoked keys, now destroyed
  std::vector<std::string> destroyed_partial;  // temporary files of interrupted key writes
  std::vector<std::string> orphans;            // *.pem no state entry refers to: left in place
  std::vector<std::string> errors;             // what could not be destroyed or read, and why
};

// Cleans up keys/ after a crash, under the keystore lock, before the engine runs: a crash
// between saving a revocation and destroying the key leaves a revoked key's private key on
// disk, and one during a key write leaves its temporary file; both are destroyed (zeroed,
// removed). A *.pem that no state entry names is only reported: it may be a key being
// imported, or the live key of a state.json restored from an older backup, and destroying it
// would make the selector already in DNS unrecoverable.
KeyFileSweep SweepKeyFiles(const std::string& directory, const std::vector<KeyInfo>& keys);

// The JSON text of a state, and back: shared with `dkimrotor keys --json`.
std::string StateToJson(const std::vector<KeyInfo>& keys);
util::Result<std::vector<KeyInfo>> StateFromJson(const std::string& text, const std::string& source);

}  // namespace dkimrotor::keystore

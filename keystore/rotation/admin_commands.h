// The checks an admin's keystore commands go through before the engine acts, one set of rules
// for the direct path (cli/, under the keystore's lock) and the daemon's control channel (on
// its rotation thread): a key brought by `keys import`, and an emergency revocation that would
// leave a stream without an active key. Write nothing.
// Stateless; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "keystore/key_info.h"
#include "keystore/rotation/rotation_engine.h"
#include "util/result.h"

namespace dkimrotor::keystore {

struct ImportedKey {
  KeyInfo info;     // state pending, created and state_since `now`
  std::string pem;  // the key re-encoded (PKCS#8), for the key file
};

// `source` names the PEM's origin in messages ("key file /root/k.pem").
util::Result<ImportedKey> PrepareImport(const RotationOptions& options, const std::vector<KeyInfo>& keys,
                                        const std::string& domain, const std::string& selector,
                                        const std::string& pem, const std::string& source, TimePoint now);

// Whether EmergencyRevoke(domain, selector) may go ahead: an unknown domain or selector is
// kNotFound (naming the selectors there are); revoking the last active key of its algorithm
// with no ready spare to take over is refused unless `force`, because the domain's mail would
// go out without that signature. `*leaves_unsigned` tells whether it would.
util::Status CheckEmergency(const RotationOptions& options, const std::vector<KeyInfo>& keys,
                            const std::string& domain, const std::string& selector, bool force,
                            bool* leaves_unsigned);

}  // namespace dkimrotor::keystore

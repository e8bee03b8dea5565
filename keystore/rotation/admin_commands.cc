#include "keystore/rotation/admin_commands.h"

#include "signer/algorithm.h"
#include "signer/private_key.h"
#include "signer/signing_key.h"

namespace dkimrotor::keystore {

util::Result<ImportedKey> PrepareImport(const RotationOptions& options, const std::vector<KeyInfo>& keys,
                                        const std::string& domain, const std::string& selector,
                                        const std::string& pem, const std::string& source, TimePoint now) {
  bool configured = false;
  for (const auto& p : options.streams) configured |= p.domain == domain;
  if (!configured)
    return util::Err(util::ErrorCode::kNotFound, "domain " + domain + " is not in the configuration");
  RETURN_IF_ERROR(signer::ValidateDnsName(selector, "selector"));
  for (const auto& k : keys)
    if (k.domain == domain && k.selector == selector)
      return util::Err(util::ErrorCode::kInvalidArgument,
                       "selector " + selector + " of " + domain + " exists already (state " +
                           std::string(KeyStateName(k.state)) + "): selectors are never reused");
  auto key = signer::PrivateKey::FromPem(pem);
  if (!key) return util::Err(util::ErrorCode::kInvalidArgument, source + ": " + key.error().message);
  const signer::Algorithm algorithm = (*key)->algorithm();
  bool stream = false;
  for (const auto& p : options.streams) stream |= p.domain == domain && p.algorithm == algorithm;
  if (!stream)
    return util::Err(util::ErrorCode::kInvalidArgument, domain + " does not sign with " +
                                                            std::string(signer::AlgorithmName(algorithm)) +
                                                            " (its algorithms setting)");
  ImportedKey imported;
  KeyInfo& k = imported.info;
  k.domain = domain;
  k.selector = selector;
  k.algorithm = algorithm;
  k.bits = (*key)->bits();
  k.state = KeyState::kPending;
  k.created = k.state_since = now;
  k.public_key = (*key)->dkim_public_key();
  ASSIGN_OR_RETURN(imported.pem, (*key)->ToPem());
  return imported;
}

util::Status CheckEmergency(const RotationOptions& options, const std::vector<KeyInfo>& keys,
                            const std::string& domain, const std::string& selector, bool force,
                            bool* leaves_unsigned) {
  *leaves_unsigned = false;
  const std::string name = selector + "._domainkey." + domain;
  bool configured = false;
  for (const auto& p : options.streams) configured |= p.domain == domain;
  const KeyInfo* key = nullptr;
  for (const auto& k : keys)
    if (k.domain == domain && k.selector == selector) key = &k;
  if (!key) {
    if (!configured) return util::Err(util::ErrorCode::kNotFound, "domain " + domain + " is not configured");
    std::string known;
    for (const auto& k : keys)
      if (k.domain == domain && k.state != KeyState::kRevoked)
        known += (known.empty() ? "" : ", ") + k.selector + " (" + std::string(KeyStateName(k.state)) + ")";
    return util::Err(util::ErrorCode::kNotFound,
                     "no key " + name + "; " + domain + "'s keys: " + (known.empty() ? "none" : known));
  }
  if (key->state != KeyState::kActive) return util::Ok();
  int other_active = 0, ready = 0;
  for (const auto& k : keys) {
    if (k.domain != domain || k.algorithm != key->algorithm || k.selector == selector) continue;
    other_active += k.state == KeyState::kActive ? 1 : 0;
    ready += k.state == KeyState::kReady ? 1 : 0;
  }
  *leaves_unsigned = other_active == 0 && ready == 0;
  if (*leaves_unsigned && !force)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "refused: " + name + " is " + domain + "'s last active " +
                         std::string(signer::AlgorithmName(key->algorithm)) +
                         " key and no verified spare is ready, so " + domain +
                         "'s mail would go out without that signature (unsigned, if it is its only algorithm) "
                         "until a new key has passed its DNS check; repeat with --force to revoke it anyway");
  return util::Ok();
}

}  // namespace dkimrotor::keystore

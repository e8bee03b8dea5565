// Turns the configuration into each module's options: the one place that knows both conf's
// structs and the other modules' (keystore, milter, daemon). Stateless; safe from any thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "conf/config.h"
#include "daemon/daemon_settings.h"
#include "keystore/keystore_world.h"
#include "keystore/rotation/rotation_engine.h"
#include "session/settings.h"
#include "util/result.h"

namespace dkimrotor::cli {

// The time the commands act at, in whole seconds as the keystore keeps it.
keystore::TimePoint Now();

util::Result<keystore::RotationOptions> RotationOptionsFrom(const conf::Config& config);
keystore::KeystoreWorldOptions WorldOptionsFrom(const conf::Config& config);
keystore::DnsCheckOptions DnsOptionsFrom(const conf::Config& config);
// The signing session's settings: who may sign, which headers, which domains, the answers.
util::Result<std::shared_ptr<const session::Settings>> SessionSettingsFrom(const conf::Config& config);
// Everything `dkimrotor run` needs, checked: an error names what is wrong in the file.
util::Result<daemon::DaemonSettings> DaemonSettingsFrom(const conf::Config& config);

}  // namespace dkimrotor::cli

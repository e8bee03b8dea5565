// What the daemon runs with: typed settings, translated from the configuration file by cli/
// (the daemon never sees conf/), and the loader a reload calls to get the next ones.
// Plain values; a DaemonSettings is built on one thread and then only read or replaced whole.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <memory>

#include "session/settings.h"
#include "keystore/keystore_world.h"
#include "keystore/rotation/rotation_engine.h"
#include "util/result.h"
#include "util/server_address.h"

namespace dkimrotor::daemon {

struct DaemonSettings {
  // Applied at start only: a reload that changes socket or keystore directory is warned
  // about and keeps the old ones (the socket is bound and the keystore locked already).
  std::string socket;             // libmilter syntax: inet:PORT@HOST, inet6:PORT@HOST, unix:/path
  unsigned socket_mode = 0660;    // permission bits of a unix socket
  std::string user;               // run as this user when started as root; empty: stay
  std::string group;              // the unix socket's group and the user's group; empty: primary
  // Where GET /metrics is served; none: no endpoint. A reload keeps the listener as it is.
  std::optional<util::ServerAddress> metrics_listen;
  // Reloadable.
  std::chrono::seconds stop_timeout{30};  // how long SIGTERM waits for the messages in flight
  std::shared_ptr<const session::Settings> session;  // what the signing sessions decide by
  keystore::RotationOptions rotation;
  // world.directory is the keystore (start only); world.log and world.audit are set by the
  // daemon, to its own logger.
  keystore::KeystoreWorldOptions world;
  std::chrono::milliseconds poll{60000};  // rotation engine steps at least this often
  std::vector<std::string> domains;       // the signing domains, for log lines
};

// Re-reads and translates the configuration for a reload; an error refuses the reload.
// Called on the daemon's reload thread.
using SettingsLoader = std::function<util::Result<DaemonSettings>()>;

}  // namespace dkimrotor::daemon

// Renders the daemon's /metrics page from its parts at the moment of the scrape: the signing
// service's counters and histogram, the per-key signature counters, the keystore world's hook
// and DNS counts, and the rotation engine's keys (as committed) for key states and the time
// to each stream's next rotation step.
// Borrows everything in MetricsSources, which the daemon keeps alive while the server runs.
// Thread-safety: RenderMetrics may run on several threads at once; what it reads is atomics,
// or taken under their owners' locks (never on the signing path).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "daemon/daemon_settings.h"
#include "keystore/key_info.h"
#include "keystore/keystore_world.h"
#include "keystore/signing_snapshot.h"
#include "session/signing_service.h"

namespace dkimrotor::daemon {

struct MetricsSources {
  const session::SigningService* service = nullptr;
  const keystore::SnapshotHolder* snapshots = nullptr;
  const keystore::WorldCounters* world = nullptr;
  std::function<std::vector<keystore::KeyInfo>()> keys;  // the rotation engine's, as committed
  std::function<DaemonSettings()> settings;              // the current ones
  std::function<keystore::TimePoint()> now;              // the system clock when empty
  std::string version;
};

std::string RenderMetrics(const MetricsSources& sources);

}  // namespace dkimrotor::daemon

// What the daemon answers on its control channel (control::ControlServer): status and keys
// from what it holds, and the keystore commands (rotate, emergency revocation, import) run on
// the rotation thread through RotationRunner::Execute, so the daemon stays the keystore's only
// writer. An emergency answers once the revoked selector can sign nothing more: the snapshot
// is swapped and the messages that began with an older one have ended.
// Borrows everything in ControlContext; the daemon keeps it alive until the server is stopped.
// Thread-safety: Handle() may be called from several threads at once; the keystore commands
// are serialized by the rotation thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include <spdlog/logger.h>

#include "control/protocol.h"
#include "control/server.h"
#include "daemon/daemon_settings.h"
#include "daemon/rotation_runner.h"
#include "keystore/signing_snapshot.h"
#include "session/signing_service.h"

namespace dkimrotor::daemon {

struct ControlContext {
  RotationRunner* rotation = nullptr;
  const session::SigningService* service = nullptr;
  const keystore::SnapshotHolder* snapshots = nullptr;
  std::function<DaemonSettings()> settings;  // the current ones
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<spdlog::logger> audit;
  std::chrono::system_clock::time_point started;
  // How long a keystore command may wait for the rotation thread (a step in flight), and how
  // long an emergency waits for the messages that began before it.
  std::chrono::milliseconds command_timeout{60000};
  std::chrono::milliseconds drain_timeout{10000};
};

class ControlService {
 public:
  explicit ControlService(ControlContext context) : c_(std::move(context)) {}

  control::Answer Handle(const control::Request& request, const control::Peer& peer) const;

 private:
  control::Answer Status() const;
  control::Answer Keys() const;
  control::Answer Rotate(const control::Request& request, const control::Peer& peer) const;
  control::Answer Emergency(const control::Request& request, const control::Peer& peer) const;
  control::Answer Import(const control::Request& request, const control::Peer& peer) const;

  const ControlContext c_;
};

}  // namespace dkimrotor::daemon

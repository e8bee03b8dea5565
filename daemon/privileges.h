// The daemon's identity: the unix socket handed to the MTA's group, and root dropped for the
// configured user once the socket is bound. Process-wide effects; call them from the main
// thread before any other thread exists that could race with setuid().
#pragma once

#include <sys/types.h>

#include <string>

#include "util/result.h"

namespace dkimrotor::daemon {

// A unix socket ("unix:/path" or "local:/path") gets `group`, so the MTA (e.g. the postfix
// group) can connect to it. Nothing to do for inet sockets or an empty group.
util::Status GiveSocketToGroup(const std::string& socket, const std::string& group);

// The uid the daemon runs as once DropPrivileges(user, ...) is done.
util::Result<uid_t> RunAsUid(const std::string& user);
// True when DropPrivileges(user, ...) will change the process's user.
bool WillDropPrivileges(const std::string& user);

// When running as root and `user` is set: becomes `user`, with `group` (or the user's primary
// group) and the user's supplementary groups.
util::Status DropPrivileges(const std::string& user, const std::string& group);

}  // namespace dkimrotor::daemon

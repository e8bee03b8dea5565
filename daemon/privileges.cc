// getgrnam/getpwnam are not reentrant: called from the main thread at start only.
#include "daemon/privileges.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "milter/milter.h"

namespace dkimrotor::daemon {

util::Status GiveSocketToGroup(const std::string& socket, const std::string& group) {
  if (group.empty()) return util::Ok();
  const std::string path = milter::UnixSocketPath(socket);
  if (path.empty()) return util::Ok();
  const struct group* gr = ::getgrnam(group.c_str());
  if (!gr) return util::Err(util::ErrorCode::kInvalidArgument, "milter.group " + group + " does not exist");
  // Like lchown: a link put in the socket's place must not hand its target to the group.
  if (::fchownat(AT_FDCWD, path.c_str(), static_cast<uid_t>(-1), gr->gr_gid, AT_SYMLINK_NOFOLLOW) != 0)
    return util::Err(util::ErrorCode::kIo, "cannot give " + path + " to group " + group + ": " + std::strerror(errno));
  return util::Ok();
}

util::Result<uid_t> RunAsUid(const std::string& user) {
  if (user.empty() || ::geteuid() != 0) return ::geteuid();
  const passwd* pw = ::getpwnam(user.c_str());
  if (!pw) return util::Err(util::ErrorCode::kInvalidArgument, "milter.user " + user + " does not exist");
  return pw->pw_uid;
}

bool WillDropPrivileges(const std::string& user) { return !user.empty() && ::geteuid() == 0; }

util::Status DropPrivileges(const std::string& user, const std::string& group) {
  if (user.empty()) return util::Ok();
  if (::geteuid() != 0) return util::Ok();  // not root: nothing to drop
  const passwd* pw = ::getpwnam(user.c_str());
  if (!pw) return util::Err(util::ErrorCode::kInvalidArgument, "milter.user " + user + " does not exist");
  gid_t gid = pw->pw_gid;
  if (!group.empty()) {
    const struct group* gr = ::getgrnam(group.c_str());
    if (!gr) return util::Err(util::ErrorCode::kInvalidArgument, "milter.group " + group + " does not exist");
    gid = gr->gr_gid;
  }
  if (::initgroups(pw->pw_name, gid) != 0 || ::setgid(gid) != 0 || ::setuid(pw->pw_uid) != 0)
    return util::Err(util::ErrorCode::kIo, std::string("cannot drop privileges: ") + std::strerror(errno));
  return util::Ok();
}

}  // namespace dkimrotor::daemon

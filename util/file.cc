#include "util/file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace dkimrotor::util {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Unexpected IoError(const std::string& what, const std::string& path, int err) {
  return Err(ErrorCode::kIo, what + " " + path + ": " + std::strerror(err));
}

Result<std::string> ReadAll(const Fd& fd, const std::string& path) {
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("cannot read", path, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

Result<std::string> ReadFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return IoError("cannot open", path, errno);
  return ReadAll(fd, path);
}

Result<std::string> ReadSecretFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) {
    if (errno == ELOOP)
      return Err(ErrorCode::kInvalidArgument,
                 "key file " + path + " is a symbolic link: point the setting at the file itself");
    return IoError("cannot open key file", path, errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return IoError("cannot stat key file", path, errno);
  if (!S_ISREG(st.st_mode))
    return Err(ErrorCode::kInvalidArgument, "key file " + path + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    return Err(ErrorCode::kInvalidArgument,
               "key file " + path + " is accessible by group or others (mode " + ModeText(st.st_mode) +
                   "): chmod 0600 it, and replace the key if others may have read it");
  }
  return ReadAll(fd, path);
}

namespace {

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("cannot write", path, errno);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

Status FsyncFolderOf(const std::string& path) {
  const std::string dir = FolderOf(path);
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return IoError("cannot open folder", dir, errno);
  if (::fsync(fd.get()) != 0) return IoError("cannot fsync folder", dir, errno);
  return Ok();
}

}  // namespace

std::string FolderOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string ModeText(unsigned mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", mode & 07777);
  return text;
}

Status WriteFileAtomically(const std::string& path, std::string_view data, unsigned mode) {
  // A name nobody can guess, created with O_EXCL (mkostemp): nobody else with write access to
  // the folder can plant a file or a symbolic link there for us to write a key into. The
  // temporary starts as 0600, so the key is never readable by others even for a moment.
  std::string tmp = path + ".tmp.XXXXXX";
  {
    Fd fd(::mkostemp(tmp.data(), O_CLOEXEC));
    if (fd.get() < 0) return IoError("cannot create", path + ".tmp.XXXXXX", errno);
    auto fail = [&](const std::string& what, int err) {
      ::unlink(tmp.c_str());
      return IoError(what, tmp, err);
    };
    if (::fchmod(fd.get(), mode) != 0) return fail("cannot chmod", errno);
    if (auto st = WriteAll(fd.get(), data, tmp); !st) {
      ::unlink(tmp.c_str());
      return st;
    }
    if (::fsync(fd.get()) != 0) return fail("cannot fsync", errno);  // ENOSPC and EIO surface here
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return IoError("cannot rename into place", path, err);
  }
  return FsyncFolderOf(path);
}

Status DestroyFile(const std::string& path) {
  {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) {
      if (errno == ENOENT) return Ok();
      return IoError("cannot open for destruction", path, errno);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return IoError("cannot stat", path, errno);
    std::string zeros(static_cast<size_t>(st.st_size), '\0');
    RETURN_IF_ERROR(WriteAll(fd.get(), zeros, path));
    if (::fsync(fd.get()) != 0) return IoError("cannot fsync", path, errno);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return IoError("cannot remove", path, errno);
  return FsyncFolderOf(path);
}

}  // namespace dkimrotor::util

#include "migrate/key_file_check.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "signer/private_key.h"
#include "util/file.h"

namespace dkimrotor::migrate {

util::Result<KeyFileCheck> CheckKeyFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return util::Err(util::ErrorCode::kNotFound, "key file " + path + " does not exist");
    return util::Err(util::ErrorCode::kIo, "cannot read key file " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return util::Err(util::ErrorCode::kIo, "key file " + path + " is not a regular file");
  KeyFileCheck check;
  ASSIGN_OR_RETURN(check.pem, util::ReadFile(path));
  auto key = signer::PrivateKey::FromPem(check.pem);
  if (!key)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "key file " + path + " does not hold a usable private key: " + key.error().message);
  check.algorithm = (*key)->algorithm();
  check.bits = (*key)->bits();
  const unsigned mode = st.st_mode & 07777;
  if ((mode & 077) != 0) {
    const char* who = (mode & 070) != 0 && (mode & 07) != 0 ? "group and others"
                      : (mode & 070) != 0                   ? "group"
                                                            : "others";
    check.exposure = "key file " + path + " is readable or writable by " + who + " (mode " + util::ModeText(mode) +
                     "): imported (the keystore's copy is 0600), but anyone who could read it may hold the key; "
                     "let it rotate out soon (dkimrotor rotate), and chmod 0600 or remove the original";
  }
  return check;
}

}  // namespace dkimrotor::migrate

// The keystore folder's permissions as the daemon and `check` see them, and the lock probe a
// daemon runs before it touches its socket (issue 13).
#include "keystore/keystore_world.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace dkimrotor::keystore {
namespace {

class KeystorePermissionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dkimrotor-ks-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(::mkdir((dir_ + "/keys").c_str(), 0700), 0);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(KeystorePermissionsTest, APrivateFolderHasNoFindings) {
  std::ofstream(dir_ + "/keys/a.pem") << "k";
  ASSERT_EQ(::chmod((dir_ + "/keys/a.pem").c_str(), 0600), 0);
  auto p = CheckKeystorePermissions(dir_, ::geteuid());
  EXPECT_TRUE(p.errors.empty()) << p.errors.front();
  EXPECT_TRUE(p.warnings.empty()) << p.warnings.front();
  EXPECT_TRUE(CheckKeystorePermissions(dir_ + "/not-yet", ::geteuid()).errors.empty());
}

TEST_F(KeystorePermissionsTest, AFolderOthersMayWriteIsAnError) {
  for (const std::string& folder : {dir_, dir_ + "/keys"}) {
    ASSERT_EQ(::chmod(folder.c_str(), 0770), 0);
    auto p = CheckKeystorePermissions(dir_, ::geteuid());
    ASSERT_EQ(p.errors.size(), 1u);
    EXPECT_EQ(p.errors[0], "keystore folder " + folder + " is writable by group or others (mode 0770), who could "
                           "swap its keys and state: chmod 0700 " + folder);
    ASSERT_EQ(::chmod(folder.c_str(), 0700), 0);
  }
}

TEST_F(KeystorePermissionsTest, AFolderOfAnotherUserIsAnError) {
  // Owned by the test's user: wrong for a daemon running as uid 4242, unless it is root's.
  auto p = CheckKeystorePermissions(dir_, 4242);
  if (::geteuid() == 0) {
    EXPECT_TRUE(p.errors.empty()) << "root's folder is fine for any daemon user";
    ASSERT_EQ(::chown(dir_.c_str(), 4343, 4343), 0);
    p = CheckKeystorePermissions(dir_, 4242);
  }
  ASSERT_FALSE(p.errors.empty());
  EXPECT_NE(p.errors[0].find("is owned by uid"), std::string::npos) << p.errors[0];
  EXPECT_NE(p.errors[0].find("chown 4242 " + dir_), std::string::npos) << p.errors[0];
}

TEST_F(KeystorePermissionsTest, AKeyFileOthersMayReadIsAWarning) {
  const std::string key = dir_ + "/keys/a.pem";
  std::ofstream(key) << "k";
  ASSERT_EQ(::chmod(key.c_str(), 0640), 0);
  auto p = CheckKeystorePermissions(dir_, ::geteuid());
  EXPECT_TRUE(p.errors.empty());
  ASSERT_EQ(p.warnings.size(), 1u);
  EXPECT_EQ(p.warnings[0], "key file " + key + " is accessible by group or others (mode 0640): chmod 0600 " + key +
                               ", and replace the key if others may have read it");
}

TEST_F(KeystorePermissionsTest, CheckFreeSeesAHeldLockWithoutTakingIt) {
  EXPECT_TRUE(KeystoreLock::CheckFree(dir_).has_value());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/lock")) << "a probe must create nothing";
  auto lock = KeystoreLock::Acquire(dir_);
  ASSERT_TRUE(lock.has_value()) << lock.error().message;
  // flock locks belong to the open file description: another open() conflicts, as another
  // process would.
  auto st = KeystoreLock::CheckFree(dir_);
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message.find("is in use by dkimrotor (pid " + std::to_string(::getpid())), std::string::npos)
      << st.error().message;
  lock->reset();
  EXPECT_TRUE(KeystoreLock::CheckFree(dir_).has_value());
}

// The publish hook learns where the record goes (issue 12): DKIMROTOR_RECORD_NAME, for a
// delegated domain in its zone with DKIMROTOR_RECORD_ZONE, and the key's own value for hooks
// that must not clobber another server's record. The call's variables win over the daemon's.
TEST_F(KeystorePermissionsTest, PublishHookGetsTheRecordNameZoneAndKeyValue) {
  const std::string hook = dir_ + "/hook", out = dir_ + "/seen";
  std::ofstream(hook) << "#!/bin/sh\n"
                         "printf '%s|%s|%s|%s|%s|%s|%s\\n' \"$1\" \"$2\" \"$3\" \"$DKIMROTOR_RECORD_NAME\" "
                         "\"${DKIMROTOR_RECORD_ZONE-unset}\" \"$DKIMROTOR_KEY_VALUE\" \"$4\" >> " + out + "\n";
  ASSERT_EQ(::chmod(hook.c_str(), 0755), 0);
  ASSERT_EQ(::setenv("DKIMROTOR_RECORD_NAME", "inherited.example", 1), 0);
  KeystoreWorldOptions o;
  o.directory = dir_;
  o.hooks["plain.example"] = HookConfig{hook, std::chrono::milliseconds(5000)};
  o.hooks["customer.example"] = HookConfig{hook, std::chrono::milliseconds(5000)};
  o.delegations["customer.example"] = "customer-example.keys.example.net";
  KeystoreWorld world(o);
  KeyInfo k;
  k.domain = "plain.example";
  k.selector = "s1";
  k.public_key = "QUJD";
  ASSERT_TRUE(world.Publish(k, false, KeyRecordValue(k)).has_value());
  k.domain = "customer.example";
  k.selector = "k2";
  ASSERT_TRUE(world.Publish(k, true, RevokedRecordValue()).has_value());
  ::unsetenv("DKIMROTOR_RECORD_NAME");
  std::stringstream seen;
  seen << std::ifstream(out).rdbuf();
  EXPECT_EQ(seen.str(),
            "publish|plain.example|s1|s1._domainkey.plain.example|unset|v=DKIM1; k=rsa; p=QUJD|v=DKIM1; k=rsa; p=QUJD\n"
            "revoke|customer.example|k2|k2._domainkey.customer-example.keys.example.net|"
            "customer-example.keys.example.net|v=DKIM1; k=rsa; p=QUJD|v=DKIM1; p=\n");
}

}  // namespace
}  // namespace dkimrotor::keystore

// The keystore on a small tmpfs that fills up, and on a folder turned read-only under the
// running daemon (a read-only bind mount: as root, chmod does not stop writes). In both, a
// rotation step cannot save its state: the old state.json stays byte for byte, the log says
// why, the daemon keeps signing with the keys it has (dkimpy verifies), and once space or
// write access returns the next rotation goes through. Needs root for mount(2); skips with a
// message otherwise.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "keystore/storage/state_store.h"
#include "tests/faults/daemon_lab.h"

namespace dkimrotor::faults {
namespace {

using keystore::KeyState;
using keystore::testing::KnotServer;
using keystore::testing::ReadText;

class DiskFault : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs (CI runs the tests as root)";
    if (!KnotServer::Available()) GTEST_SKIP() << "knotd is not installed";
    char tmpl[] = "/tmp/dkimrotor-disk-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    mount_ = tmpl;
    if (::mount("tmpfs", mount_.c_str(), "tmpfs", 0, "size=1m,mode=0700") != 0) {
      const int err = errno;
      std::filesystem::remove_all(mount_);
      mount_.clear();
      GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(err) << "): not allowed in this container";
    }
    DaemonLab::Options options;
    options.keystore = mount_ + "/keystore";
    auto lab = DaemonLab::Create(options);
    ASSERT_TRUE(lab.has_value()) << lab.error().message;
    lab_ = std::move(*lab);
    ASSERT_TRUE(lab_->StartDaemon().has_value());
    // Settled: each algorithm has its active key and its ready spare.
    ASSERT_TRUE(WaitFor([&] { return Settled(); }, std::chrono::seconds(30))) << lab_->LogTail();
  }

  void TearDown() override {
    lab_.reset();
    if (bind_mounted_) ::umount2(options_keystore().c_str(), MNT_DETACH);
    if (!mount_.empty()) {
      ::umount2(mount_.c_str(), MNT_DETACH);
      std::filesystem::remove_all(mount_);
    }
  }

  std::string options_keystore() const { return mount_ + "/keystore"; }

  bool Settled() {
    auto keys = keystore::LoadState(lab_->keystore());
    if (!keys) return false;
    int active = 0, ready = 0;
    for (const auto& k : *keys) {
      active += k.state == KeyState::kActive;
      ready += k.state == KeyState::kReady;
    }
    return active == 2 && ready == 2;
  }

  void ExpectSignsVerifiably(const std::string& when) {
    auto signed_message = lab_->SignOne(when);
    ASSERT_TRUE(signed_message.has_value()) << when << ": " << signed_message.error().message;
    EXPECT_EQ(signed_message->second, 2) << when << ": " << lab_->LogTail();
    EXPECT_EQ(lab_->VerifyFailure(signed_message->first, 2), "") << when;
  }

  // A rotation that cannot be saved: refused with the reason, nothing changed on disk.
  void ExpectRotationRefused(const std::string& reason) {
    const std::string before = ReadText(keystore::StatePath(lab_->keystore()));
    auto rotate = lab_->Cli({"rotate", "--domain", "example.test"});
    ASSERT_TRUE(rotate.has_value());
    EXPECT_NE(rotate->exit_code, 0) << rotate->output;
    EXPECT_NE(rotate->output.find(reason), std::string::npos) << rotate->output;
    EXPECT_NE(ReadText(lab_->log()).find("rotate example.test failed, keys unchanged, signing goes on"),
              std::string::npos) << lab_->LogTail();
    EXPECT_NE(ReadText(lab_->log()).find(reason), std::string::npos) << lab_->LogTail();
    EXPECT_EQ(ReadText(keystore::StatePath(lab_->keystore())), before);
    EXPECT_TRUE(keystore::LoadState(lab_->keystore()).has_value());
    EXPECT_TRUE(lab_->DaemonAlive());
  }

  void ExpectRotationGoesThrough() {
    const std::string before = ReadText(keystore::StatePath(lab_->keystore()));
    auto rotate = lab_->Cli({"rotate", "--domain", "example.test"});
    ASSERT_TRUE(rotate.has_value());
    EXPECT_EQ(rotate->exit_code, 0) << rotate->output << lab_->LogTail();
    EXPECT_NE(ReadText(keystore::StatePath(lab_->keystore())), before);
    ASSERT_TRUE(WaitFor([&] { return Settled(); }, std::chrono::seconds(30))) << lab_->LogTail();
    std::vector<std::string> leftovers;
    for (const auto& p : lab_->CheckKeystore(&leftovers)) ADD_FAILURE() << p;
  }

  std::string mount_;
  bool bind_mounted_ = false;
  std::unique_ptr<DaemonLab> lab_;
};

TEST_F(DiskFault, FullDiskKeepsTheOldStateAndSigningThenRecovers) {
  const std::string filler = mount_ + "/filler";
  {
    const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    const std::string block(4096, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    ::close(fd);
  }
  ASSERT_EQ(std::filesystem::space(mount_).available, 0u);
  ASSERT_NO_FATAL_FAILURE(ExpectRotationRefused("No space left on device"));
  ASSERT_NO_FATAL_FAILURE(ExpectSignsVerifiably("disk full"));

  std::filesystem::remove(filler);
  ASSERT_NO_FATAL_FAILURE(ExpectRotationGoesThrough());
  ASSERT_NO_FATAL_FAILURE(ExpectSignsVerifiably("space back"));
  auto stopped = lab_->StopDaemon();
  ASSERT_TRUE(stopped.has_value()) << stopped.error().message;
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0) << lab_->LogTail();
}

TEST_F(DiskFault, ReadOnlyKeystoreKeepsTheOldStateAndSigningThenRecovers) {
  const std::string dir = options_keystore();
  ASSERT_EQ(::mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr), 0) << std::strerror(errno);
  bind_mounted_ = true;
  ASSERT_EQ(::mount(nullptr, dir.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr), 0)
      << std::strerror(errno);
  ASSERT_NE(::access((dir + "/state.json").c_str(), W_OK), 0) << "the bind mount is not read-only";
  ASSERT_NO_FATAL_FAILURE(ExpectRotationRefused("Read-only file system"));
  ASSERT_NO_FATAL_FAILURE(ExpectSignsVerifiably("read-only keystore"));

  ASSERT_EQ(::umount2(dir.c_str(), 0), 0) << std::strerror(errno);
  bind_mounted_ = false;
  ASSERT_NO_FATAL_FAILURE(ExpectRotationGoesThrough());
  ASSERT_NO_FATAL_FAILURE(ExpectSignsVerifiably("writable again"));
  auto stopped = lab_->StopDaemon();
  ASSERT_TRUE(stopped.has_value()) << stopped.error().message;
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0) << lab_->LogTail();
}

}  // namespace
}  // namespace dkimrotor::faults

// milter::CheckUnixSocketPath: what libmilter may remove before it binds (issue 13: a second
// instance removed the first one's live socket) and where a socket may live.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "milter/milter.h"

namespace dkimrotor::milter {
namespace {

class SocketPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dkimrotor-sock-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
    std::filesystem::remove_all(dir_);
  }
  // Binds a unix socket at `path`; listens unless `listen` is false.
  void Bind(const std::string& path, bool listen) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd_, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path.c_str());
    ASSERT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
    if (listen) {
      ASSERT_EQ(::listen(fd_, 4), 0);
    }
  }
  std::string Error(const std::string& path) {
    auto st = CheckUnixSocketPath(path);
    return st ? "" : st.error().message;
  }
  std::string dir_;
  int fd_ = -1;
};

TEST_F(SocketPathTest, NothingThereIsFine) { EXPECT_EQ(Error(dir_ + "/m.sock"), ""); }

TEST_F(SocketPathTest, ALiveSocketIsLeftAlone) {
  const std::string path = dir_ + "/m.sock";
  ASSERT_NO_FATAL_FAILURE(Bind(path, true));
  EXPECT_NE(Error(path).find("another process listens on milter socket " + path), std::string::npos) << Error(path);
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST_F(SocketPathTest, AStaleSocketMayGo) {
  const std::string path = dir_ + "/m.sock";
  ASSERT_NO_FATAL_FAILURE(Bind(path, false));  // bound, nobody listens: refused connections
  EXPECT_EQ(Error(path), "");
}

TEST_F(SocketPathTest, ALinkOrAFileIsRefused) {
  const std::string path = dir_ + "/m.sock";
  ASSERT_EQ(::symlink("/etc/passwd", path.c_str()), 0);
  EXPECT_NE(Error(path).find("is a symbolic link"), std::string::npos) << Error(path);
  ASSERT_EQ(::unlink(path.c_str()), 0);
  std::ofstream(path) << "x";
  EXPECT_NE(Error(path).find("exists and is not a socket"), std::string::npos) << Error(path);
}

TEST_F(SocketPathTest, AFolderEveryoneMayWriteNeedsTheStickyBit) {
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  EXPECT_NE(Error(dir_ + "/m.sock").find("is writable by everyone (mode 0777)"), std::string::npos)
      << Error(dir_ + "/m.sock");
  EXPECT_NE(Error(dir_ + "/m.sock").find("chmod o-w " + dir_), std::string::npos);
  ASSERT_EQ(::chmod(dir_.c_str(), 01777), 0);
  EXPECT_EQ(Error(dir_ + "/m.sock"), "");
  ASSERT_EQ(::chmod(dir_.c_str(), 0770), 0);  // shared with the MTA's group: fine
  EXPECT_EQ(Error(dir_ + "/m.sock"), "");
}

TEST(UnixSocketPath, OnlyForUnixSockets) {
  EXPECT_EQ(UnixSocketPath("unix:/run/m.sock"), "/run/m.sock");
  EXPECT_EQ(UnixSocketPath("local:/run/m.sock"), "/run/m.sock");
  EXPECT_EQ(UnixSocketPath("inet:8891@127.0.0.1"), "");
}

}  // namespace
}  // namespace dkimrotor::milter

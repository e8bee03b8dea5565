#include "keystore/publish/hook_runner.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <unistd.h>

namespace dkimrotor::keystore {
namespace {

using std::chrono::milliseconds;

class HookRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dkimrotor-hook-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Script(const std::string& name, const std::string& body) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    ::chmod(path.c_str(), 0700);
    return path;
  }
  std::string dir_;
};

TEST_F(HookRunnerTest, PassesArgumentsVerbatimWithoutAShell) {
  const std::string out = dir_ + "/args";
  std::string hook = Script("record", "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > " + out);
  // A value a shell would expand or split: it must arrive as one untouched argument.
  const std::string value = "v=DKIM1; p=$(touch " + dir_ + "/pwned) `id` *";
  ASSERT_TRUE(RunHookChecked({hook, "publish", "example.com", "s1", value}, milliseconds(5000)).has_value());
  std::ifstream in(out);
  std::string line;
  std::vector<std::string> got;
  while (std::getline(in, line)) got.push_back(line);
  EXPECT_EQ(got, (std::vector<std::string>{"publish", "example.com", "s1", value}));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/pwned"));
}

TEST_F(HookRunnerTest, FailureReportsStatusAndStderr) {
  std::string hook = Script("fail", "echo 'zone example.com: NOTAUTH' >&2; exit 3");
  auto st = RunHookChecked({hook, "publish", "example.com", "s1", "v=DKIM1; p="}, milliseconds(5000));
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message.find("exited with status 3"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find("NOTAUTH"), std::string::npos) << st.error().message;
}

// A descriptor without close-on-exec (libmilter sets it only after accept() returns) must not
// reach a hook: one still running after the daemon died would keep what it holds.
TEST_F(HookRunnerTest, InheritsNoDescriptorBeyondStderr) {
  const int inheritable = ::socket(AF_INET, SOCK_STREAM, 0);  // no SOCK_CLOEXEC, as libmilter
  ASSERT_GE(inheritable, 3);
  std::string hook = Script("fds", "ls /proc/$$/fd >&2");
  auto r = RunHook({hook}, milliseconds(5000));
  ::close(inheritable);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->exit_status, 0) << r->stderr_text;
  EXPECT_EQ(r->stderr_text.find(std::to_string(inheritable) + "\n"), std::string::npos)
      << "the hook sees descriptor " << inheritable << ":\n" << r->stderr_text;
}

TEST_F(HookRunnerTest, HangingHookIsKilledAtTheTimeout) {
  std::string hook = Script("hang", "sleep 30 & sleep 30");
  const auto start = std::chrono::steady_clock::now();
  auto r = RunHook({hook}, milliseconds(300));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  auto st = RunHookChecked({hook}, milliseconds(200));
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message.find("killed after 200 ms"), std::string::npos) << st.error().message;
}

TEST_F(HookRunnerTest, StderrIsBounded) {
  std::string hook = Script("chatty", "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1");
  auto r = RunHook({hook}, milliseconds(5000));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->exit_status, 1);
  EXPECT_EQ(r->stderr_text.size(), kMaxHookStderr);
}

// Issue 13: a hook others can write is a way to run commands as the daemon.
TEST_F(HookRunnerTest, RefusesAHookWritableByGroupOrOthers) {
  const std::string marker = dir_ + "/ran";
  for (mode_t mode : {0775, 0757}) {
    std::string hook = Script("writable", "touch " + marker);
    ASSERT_EQ(::chmod(hook.c_str(), mode), 0);
    auto st = RunHookChecked({hook, "publish"}, milliseconds(5000));
    ASSERT_FALSE(st.has_value());
    EXPECT_NE(st.error().message.find("hook " + hook + " is writable by group or others"), std::string::npos)
        << st.error().message;
    EXPECT_NE(st.error().message.find("chmod 0755 it"), std::string::npos) << st.error().message;
    EXPECT_FALSE(std::filesystem::exists(marker));
  }
}

TEST_F(HookRunnerTest, RefusesAHookOwnedByAnotherUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a file away";
  const std::string marker = dir_ + "/ran";
  std::string hook = Script("foreign", "touch " + marker);
  ASSERT_EQ(::chown(hook.c_str(), 65534, 65534), 0);
  auto st = RunHookChecked({hook}, milliseconds(5000));
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message.find("owned by uid 65534, neither root nor the daemon's user"), std::string::npos)
      << st.error().message;
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST_F(HookRunnerTest, RunsWithAMinimalEnvironment) {
  ::setenv("DKIMROTOR_NS_TSIG", "/etc/dkimrotor/tsig.key", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "not-for-hooks", 1);
  ::setenv("LD_PRELOAD", "", 1);
  const std::string out = dir_ + "/env";
  std::string hook = Script("env", "env > " + out);
  ASSERT_TRUE(RunHookChecked({hook}, milliseconds(5000)).has_value());
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::unsetenv("LD_PRELOAD");
  ::unsetenv("DKIMROTOR_NS_TSIG");
  std::ifstream in(out);
  std::set<std::string> got;
  for (std::string line; std::getline(in, line);)
    if (line.rfind("PWD=", 0) != 0 && line.rfind("SHLVL=", 0) != 0 && line.rfind("_=", 0) != 0)
      got.insert(line);  // what /bin/sh adds by itself
  EXPECT_EQ(got, (std::set<std::string>{"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                                        "DKIMROTOR_NS_TSIG=/etc/dkimrotor/tsig.key"}));
}

// A hook that ignores SIGTERM and leaves a child that ignores it too: both are gone, and
// RunHook returns within the timeout plus kHookTermGrace, never waiting on them for good.
TEST_F(HookRunnerTest, TimeoutKillsTheWholeGroupEvenIfItIgnoresSigterm) {
  const std::string pidfile = dir_ + "/child";
  std::string hook = Script("stubborn", "trap '' TERM; sh -c 'trap \"\" TERM; sleep 60' & echo $! > " +
                                            pidfile + "; while :; do sleep 1; done");
  const auto start = std::chrono::steady_clock::now();
  auto r = RunHook({hook}, milliseconds(500));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->timed_out);
  EXPECT_FALSE(r->unreaped);
  EXPECT_LT(took, milliseconds(500) + kHookTermGrace * 2 + std::chrono::seconds(1));
  std::ifstream in(pidfile);
  pid_t child = 0;
  ASSERT_TRUE(in >> child);
  // The orphan is reaped by init (or whoever adopted it); until then it is a zombie.
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
    std::string pid_text, comm, state;
    gone = !(stat >> pid_text >> comm >> state) || state == "Z";
    if (!gone) ::usleep(10000);
  }
  EXPECT_TRUE(gone) << "child " << child << " of the hook survived the timeout";
}

TEST_F(HookRunnerTest, MissingOrRelativeHookIsAnError) {
  EXPECT_FALSE(RunHook({dir_ + "/does-not-exist"}, milliseconds(1000)).has_value());
  EXPECT_FALSE(RunHook({"relative/hook"}, milliseconds(1000)).has_value());
}

}  // namespace
}  // namespace dkimrotor::keystore

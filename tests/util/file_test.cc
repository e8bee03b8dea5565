#include "util/file.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace dkimrotor::util {
namespace {

class ReadSecretFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dkimrotor_file_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  std::string Write(const std::string& name, const std::string& content, mode_t mode) {
    std::string path = dir_ + "/" + name;
    {
      std::ofstream out(path, std::ios::binary);
      out << content;
    }
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }

  std::string dir_;
};

TEST_F(ReadSecretFileTest, ReadsA0600File) {
  const std::string content = std::string("-----BEGIN PRIVATE KEY-----\n\0\xff\n", 31);
  auto data = ReadSecretFile(Write("k.pem", content, 0600));
  ASSERT_TRUE(data.has_value()) << data.error().message;
  EXPECT_EQ(*data, content);
}

TEST_F(ReadSecretFileTest, Reads0400File) {
  auto data = ReadSecretFile(Write("k.pem", "secret", 0400));
  ASSERT_TRUE(data.has_value()) << data.error().message;
  EXPECT_EQ(*data, "secret");
}

TEST_F(ReadSecretFileTest, RefusesGroupReadable) {
  std::string path = Write("k.pem", "secret", 0640);
  auto data = ReadSecretFile(path);
  ASSERT_FALSE(data.has_value());
  EXPECT_EQ(data.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(data.error().message.find("chmod 0600"), std::string::npos) << data.error().message;
  EXPECT_NE(data.error().message.find(path), std::string::npos) << data.error().message;
  EXPECT_NE(data.error().message.find("0640"), std::string::npos) << data.error().message;
}

TEST_F(ReadSecretFileTest, RefusesOtherReadable) {
  auto data = ReadSecretFile(Write("k.pem", "secret", 0604));
  ASSERT_FALSE(data.has_value());
  EXPECT_NE(data.error().message.find("chmod 0600"), std::string::npos) << data.error().message;
  EXPECT_NE(data.error().message.find("0604"), std::string::npos) << data.error().message;
}

TEST_F(ReadSecretFileTest, RefusesGroupOrOtherWritable) {
  for (mode_t mode : {0620, 0602, 0610, 0601}) {
    auto data = ReadSecretFile(Write("k.pem", "secret", mode));
    EXPECT_FALSE(data.has_value()) << std::oct << mode;
  }
}

TEST_F(ReadSecretFileTest, RefusesSymlink) {
  std::string target = Write("k.pem", "secret", 0600);
  std::string link = dir_ + "/link.pem";
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  auto data = ReadSecretFile(link);
  ASSERT_FALSE(data.has_value());
  EXPECT_NE(data.error().message.find("symbolic link"), std::string::npos) << data.error().message;
  // The target itself is fine.
  EXPECT_TRUE(ReadSecretFile(target).has_value());
}

TEST_F(ReadSecretFileTest, RefusesDirectory) {
  std::string sub = dir_ + "/sub";
  ASSERT_EQ(::mkdir(sub.c_str(), 0700), 0);
  auto data = ReadSecretFile(sub);
  ASSERT_FALSE(data.has_value());
  EXPECT_NE(data.error().message.find("regular file"), std::string::npos) << data.error().message;
}

TEST_F(ReadSecretFileTest, MissingFileIsAnIoError) {
  auto data = ReadSecretFile(dir_ + "/missing.pem");
  ASSERT_FALSE(data.has_value());
  EXPECT_EQ(data.error().code, ErrorCode::kIo);
  EXPECT_NE(data.error().message.find("missing.pem"), std::string::npos) << data.error().message;
}

TEST_F(ReadSecretFileTest, ReadFileIgnoresMode) {
  auto data = ReadFile(Write("public.txt", "p=abc", 0644));
  ASSERT_TRUE(data.has_value()) << data.error().message;
  EXPECT_EQ(*data, "p=abc");
}

TEST_F(ReadSecretFileTest, WriteFileAtomicallyReplacesWithModeAndLeavesNoTemporary) {
  const std::string path = dir_ + "/state.json";
  ASSERT_TRUE(WriteFileAtomically(path, "first", 0600).has_value());
  ASSERT_TRUE(WriteFileAtomically(path, "second", 0600).has_value());
  EXPECT_EQ(ReadSecretFile(path).value(), "second");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  for (const auto& e : std::filesystem::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename(), "state.json") << "left behind: " << e.path();
}

// Issue 13: the temporary had a fixed name and was opened without O_EXCL, so whoever could
// write the folder could plant a link there and have the next key written through it.
TEST_F(ReadSecretFileTest, WriteFileAtomicallyNeverWritesThroughAPlantedLink) {
  const std::string path = dir_ + "/k.pem";
  const std::string victim = dir_ + "/victim";
  std::ofstream(victim) << "untouched";
  ASSERT_EQ(::symlink(victim.c_str(), (path + ".tmp").c_str()), 0);
  ASSERT_TRUE(WriteFileAtomically(path, "secret", 0600).has_value());
  EXPECT_EQ(ReadFile(victim).value(), "untouched");
  EXPECT_EQ(ReadSecretFile(path).value(), "secret");
}

TEST_F(ReadSecretFileTest, WriteFileAtomicallyUsesAFreshNameEachTime) {
  // Two writers of the same path never share a temporary: each gets its own O_EXCL name.
  const std::string path = dir_ + "/state.json";
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(WriteFileAtomically(path, std::to_string(i), 0600).has_value());
  EXPECT_EQ(ReadFile(path).value(), "19");
}

TEST_F(ReadSecretFileTest, WriteFileAtomicallyNamesTheFolderItCannotWrite) {
  auto st = WriteFileAtomically(dir_ + "/no/such/folder/state.json", "x", 0600);
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code, ErrorCode::kIo);
  EXPECT_NE(st.error().message.find("/no/such/folder/state.json.tmp.XXXXXX"), std::string::npos)
      << st.error().message;
}

TEST_F(ReadSecretFileTest, DestroyFileRemovesAndToleratesAbsence) {
  const std::string path = Write("old.pem", "-----BEGIN PRIVATE KEY-----", 0600);
  ASSERT_TRUE(DestroyFile(path).has_value());
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), -1);
  EXPECT_TRUE(DestroyFile(path).has_value());  // already gone: nothing to do
}

TEST(FolderOf, NamesTheFolderOfAPath) {
  EXPECT_EQ(FolderOf("/etc/opendkim/KeyTable"), "/etc/opendkim");
  EXPECT_EQ(FolderOf("/opendkim.conf"), "/");
  EXPECT_EQ(FolderOf("keys/a.private"), "keys");
  EXPECT_EQ(FolderOf("a.private"), ".");
}

}  // namespace
}  // namespace dkimrotor::util

// dkimrotor migrate's reader of OpenDKIM configurations: opendkim.conf and the KeyTable,
// SigningTable and InternalHosts files it names. Any text gives a plan (or an I/O error),
// never a crash; no note is empty or repeats key material found anywhere in the input; the configuration
// rendered from the plan gives a Config or an error with a message when loaded.
//
// The input is up to four parts separated by NUL bytes: opendkim.conf, then the KeyTable, the
// SigningTable and the InternalHosts file, which opendkim.conf names as @KEYTABLE@,
// @SIGNINGTABLE@ and @HOSTS@ (the target writes them to temporary files). Inputs with an
// absolute path or ".." are skipped, so a table name cannot point at /dev/zero or a FIFO and
// wait forever: the only files the reader finds are the target's own (relative names resolve
// to nothing real, "relaxed/simple" and "10.0.0.0/8" still get through).
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "conf/loader.h"
#include "migrate/config_writer.h"
#include "migrate/opendkim_migration.h"
#include "tests/fuzz/fuzz_input.h"

using namespace dkimrotor;

namespace {

// Never destroyed: the exit handler that removes it runs after static destructors would.
const std::string& Folder() {
  static const std::string* dir = [] {
    char tmpl[] = "/tmp/dkimrotor-fuzz-opendkim-XXXXXX";
    FUZZ_CHECK(::mkdtemp(tmpl) != nullptr, "mkdtemp");
    auto* made = new std::string(tmpl);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(Folder(), ignored);
    });
    return made;
  }();
  return *dir;
}

void WriteFile(const std::string& path, std::string_view text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  FUZZ_CHECK(f != nullptr, "cannot write a temporary file");
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

void ReplaceAll(std::string& text, std::string_view from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
}

// Key data: runs of 40 or more base64 characters with a digit, an upper-case and a lower-case
// letter (what a pasted key looks like; a path or a name has dots or dashes long before).
std::vector<std::string> KeyMaterial(std::string_view input) {
  std::vector<std::string> out;
  auto is_b64 = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '='; };
  size_t i = 0;
  while (i < input.size()) {
    size_t end = i;
    while (end < input.size() && is_b64(input[end])) ++end;
    if (end == i) {
      ++i;
      continue;
    }
    std::string_view run = input.substr(i, end - i);
    bool digit = false, upper = false, lower = false;
    for (char c : run) {
      digit |= std::isdigit(static_cast<unsigned char>(c)) != 0;
      upper |= std::isupper(static_cast<unsigned char>(c)) != 0;
      lower |= std::islower(static_cast<unsigned char>(c)) != 0;
    }
    if (run.size() >= 40 && digit && upper && lower) out.emplace_back(run);
    i = end;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = fuzz::AsText(data, size);
  if (input.find("..") != std::string_view::npos) return 0;
  for (size_t at = input.find('/'); at != std::string_view::npos; at = input.find('/', at + 1))
    if (at == 0 || !std::isalnum(static_cast<unsigned char>(input[at - 1]))) return 0;
  std::vector<std::string> parts(4);
  size_t part = 0;
  for (char c : input) {
    if (c == '\0' && part + 1 < parts.size()) {
      ++part;
      continue;
    }
    parts[part].push_back(c);
  }
  const std::string& dir = Folder();
  const std::string names[] = {"opendkim.conf", "KeyTable", "SigningTable", "InternalHosts"};
  for (size_t i = 1; i < parts.size(); ++i) WriteFile(dir + "/" + names[i], parts[i]);
  std::string conf = parts[0];
  ReplaceAll(conf, "@KEYTABLE@", dir + "/KeyTable");
  ReplaceAll(conf, "@SIGNINGTABLE@", dir + "/SigningTable");
  ReplaceAll(conf, "@HOSTS@", dir + "/InternalHosts");
  WriteFile(dir + "/opendkim.conf", conf);

  auto plan = migrate::PlanMigration(dir + "/opendkim.conf");
  if (!plan) {
    FUZZ_CHECK(!plan.error().message.empty(), "an error without a message");
    return 0;
  }
  const std::vector<std::string> secrets = KeyMaterial(input);
  for (const auto& note : plan->notes) {
    FUZZ_CHECK(!note.empty(), "an empty note");
    for (const auto& s : secrets) FUZZ_CHECK(note.find(s) == std::string::npos, "a note repeats key material");
  }
  for (const auto& d : plan->domains) FUZZ_CHECK(!d.domain.empty(), "a domain without a name");

  migrate::RenderOptions options;
  options.keystore_directory = dir + "/keystore";
  options.stream = "mx1";
  const std::string text = migrate::RenderConfig(*plan, options);
  auto config = conf::ParseConfig(text, "migrated.conf");
  if (!config) FUZZ_CHECK(!config.error().message.empty(), "an error without a message");
  return 0;
}

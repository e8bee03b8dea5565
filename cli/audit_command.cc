// `dkimrotor audit -c FILE [--json] REPORT...`: DMARC aggregate reports checked against the
// keystore's key history. Reads the configuration and the state file only; never asks the
// daemon or writes anything. Each report file is read here (size-capped before it is read)
// and handed as bytes to audit/, which decodes, parses and judges; a bad report is named on
// stderr and the others are still processed.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "audit/dmarc_report.h"
#include "audit/report_audit.h"
#include "audit/report_decoder.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "conf/loader.h"
#include "keystore/storage/state_store.h"

namespace dkimrotor::cli {
namespace {

constexpr const char* kAuditUsage =
    "usage: dkimrotor audit -c FILE [--json] REPORT...\n"
    "Reads DMARC aggregate reports (.xml, .xml.gz or .zip, as receivers send them) and checks\n"
    "each configured domain's selectors against the key history: managed or not, state, messages,\n"
    "DKIM passes and failures. Exit 0: nothing needs attention; 1: a finding or an unreadable report.\n";

// The compressed file's own cap; what it decompresses to is capped by audit::DecodeLimits.
constexpr off_t kMaxReportFileBytes = 50 << 20;

util::Result<std::string> ReadReportFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return util::Err(util::ErrorCode::kIo, std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return util::Err(util::ErrorCode::kIo, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return util::Err(util::ErrorCode::kInvalidArgument, "not a regular file");
  if (st.st_size > kMaxReportFileBytes)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "the file is " + std::to_string(st.st_size) + " bytes, over the " +
                         std::to_string(kMaxReportFileBytes >> 20) + " MiB limit for a report");
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    const ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return util::Err(util::ErrorCode::kIo, std::strerror(errno));
    if (n == 0) break;  // it shrank while we read: judge what is there
    got += static_cast<size_t>(n);
  }
  data.resize(got);
  return data;
}

// Keys in the documented order (selector, managed, state, ...), not sorted.
nlohmann::ordered_json ToJson(const audit::AuditResult& result) {
  nlohmann::ordered_json domains = nlohmann::ordered_json::array();
  for (const auto& d : result.domains) {
    nlohmann::ordered_json selectors = nlohmann::ordered_json::array();
    for (const auto& s : d.selectors)
      selectors.push_back({{"selector", s.selector},
                           {"managed", s.managed},
                           {"state", s.state ? nlohmann::ordered_json(*s.state) : nlohmann::ordered_json(nullptr)},
                           {"messages", s.messages},
                           {"pass", s.pass},
                           {"fail", s.fail},
                           {"findings", s.findings}});
    domains.push_back({{"domain", d.domain}, {"selectors", std::move(selectors)}});
  }
  return {{"domains", std::move(domains)}};
}

void PrintText(const audit::AuditResult& result) {
  for (const auto& d : result.domains) {
    std::printf("%s\n", d.domain.c_str());
    if (d.selectors.empty()) {
      std::printf("  (no DKIM results for this domain in the reports)\n");
      continue;
    }
    std::printf("  %-34s %-7s %-16s %9s %9s %9s\n", "SELECTOR", "MANAGED", "STATE", "MESSAGES", "PASS", "FAIL");
    for (const auto& s : d.selectors)
      std::printf("  %-34s %-7s %-16s %9llu %9llu %9llu\n", s.selector.c_str(), s.managed ? "yes" : "no",
                  s.state ? s.state->c_str() : "-", static_cast<unsigned long long>(s.messages),
                  static_cast<unsigned long long>(s.pass), static_cast<unsigned long long>(s.fail));
    for (const auto& s : d.selectors)
      for (const auto& f : s.findings) std::printf("  finding: %s: %s\n", s.selector.c_str(), f.c_str());
  }
}

}  // namespace

int RunAudit(std::span<char*> argv) {
  Args args(argv, {"--config"}, {"--json", "--help"});
  if (args.Has("--help")) {
    std::fputs(kAuditUsage, stdout);
    return kExitOk;
  }
  if (!args.ok()) {
    std::fprintf(stderr, "dkimrotor audit: %s\n\n%s", args.error().c_str(), kAuditUsage);
    return kExitUsage;
  }
  auto config_path = args.Get("--config");
  if (!config_path || args.positional().empty()) {
    std::fprintf(stderr, "dkimrotor audit: %s\n\n%s",
                 !config_path ? "-c FILE is required" : "name at least one REPORT file", kAuditUsage);
    return kExitUsage;
  }
  auto config = conf::LoadConfig(*config_path);
  if (!config) {
    std::fprintf(stderr, "dkimrotor audit: %s\n", config.error().message.c_str());
    return kExitFailure;
  }
  auto keys = keystore::LoadState(config->keystore.directory);
  if (!keys) {
    std::fprintf(stderr, "dkimrotor audit: %s\n", keys.error().message.c_str());
    return kExitFailure;
  }

  bool report_failed = false;
  std::vector<audit::DmarcReport> reports;
  for (const std::string& path : args.positional()) {
    auto bad = [&](const std::string& what, const std::string& why) {
      std::fprintf(stderr, "dkimrotor audit: %s: %s\n", what.c_str(), why.c_str());
      report_failed = true;
    };
    auto bytes = ReadReportFile(path);
    if (!bytes) {
      bad(path, bytes.error().message);
      continue;
    }
    auto docs = audit::DecodeReport(*bytes);
    if (!docs) {
      bad(path, docs.error().message);
      continue;
    }
    for (const auto& doc : *docs) {
      const std::string what = doc.name.empty() ? path : path + " (" + doc.name + ")";
      auto report = audit::ParseDmarcReport(doc.xml);
      if (!report) {
        bad(what, report.error().message);
        continue;
      }
      reports.push_back(std::move(*report));
    }
  }

  std::vector<std::string> domains;
  for (const auto& d : config->domains) domains.push_back(d.domain);
  const audit::AuditResult result = audit::AuditReports(reports, domains, *keys);
  for (const auto& note : result.notes) std::fprintf(args.Has("--json") ? stderr : stdout, "%s\n", note.c_str());
  if (args.Has("--json")) {
    std::printf("%s\n", ToJson(result).dump(2).c_str());
  } else {
    PrintText(result);
  }
  return result.NeedsAttention() || report_failed ? kExitFailure : kExitOk;
}

}  // namespace dkimrotor::cli

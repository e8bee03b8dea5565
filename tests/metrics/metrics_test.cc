// The /metrics endpoint against the real daemon: `dkimrotor run` with a real keystore, real
// Knot and the real nsupdate hook, messages through the milter protocol, and a real
// Prometheus scraping the daemon every second, asked through its HTTP API. Also scrapes
// while reloads follow one another: every page well-formed, no counter ever going back.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/keystore/knot_server.h"
#include "tests/milter/milter_client.h"

namespace dkimrotor::metrics {
namespace {

using keystore::testing::KnotServer;
using keystore::testing::ReadText;
using keystore::testing::RunProcess;
using milter::testing::Header;
using milter::testing::MilterClient;
using milter::testing::Modification;
using Clock = std::chrono::steady_clock;

const std::vector<Header> kHeaders = {{"From", " Alice <alice@example.test>"},
                                      {"To", " bob@example.net"},
                                      {"Subject", " metrics test"},
                                      {"Message-ID", " <1@example.test>"}};
const std::string kBody = "Hello,\r\n\r\ncount me.\r\n";
constexpr const char* kPrometheus = "/usr/bin/prometheus";

struct HttpReply {
  int status = 0;  // 0: no answer
  std::string content_type;
  std::string body;
};

// One HTTP/1.0 GET to 127.0.0.1:port, read to the end (the server closes).
HttpReply Get(uint16_t port, const std::string& target) {
  HttpReply reply;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return reply;
  }
  const std::string request = "GET " + target + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return reply;
  }
  std::string data;
  char buffer[8192];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) data.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  const size_t end = data.find("\r\n\r\n");
  if (data.rfind("HTTP/1.", 0) != 0 || end == std::string::npos) return reply;
  reply.status = std::atoi(data.c_str() + 9);
  std::smatch m;
  const std::string head = data.substr(0, end);
  static const std::regex kType(R"re(\r\n[Cc]ontent-[Tt]ype:\s*([^\r]*))re");
  if (std::regex_search(head, m, kType)) reply.content_type = m[1];
  reply.body = data.substr(end + 4);
  return reply;
}

// One sample of a page: the series (name and labels, as written) and its value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses a text-format page; false (with `why`) when a line is not well-formed.
bool Parse(const std::string& page, std::vector<Sample>* out, std::string* why) {
  static const std::regex kLine(R"re(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+))re");
  static const std::regex kLabel(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)",?)re");
  std::istringstream in(page);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (line.rfind("# HELP ", 0) != 0 && line.rfind("# TYPE ", 0) != 0) return *why = "comment: " + line, false;
      continue;
    }
    std::smatch m;
    if (!std::regex_match(line, m, kLine)) return *why = "sample: " + line, false;
    Sample s;
    s.name = m[1];
    const std::string labels = m[3];
    size_t consumed = 0;
    for (std::sregex_iterator it(labels.begin(), labels.end(), kLabel), end; it != end; ++it) {
      if (static_cast<size_t>(it->position()) != consumed) return *why = "labels: " + line, false;
      s.labels[(*it)[1]] = (*it)[2];
      consumed += static_cast<size_t>(it->length());
    }
    if (consumed != labels.size()) return *why = "labels: " + line, false;
    const std::string value = m[4];
    if (value == "+Inf") s.value = HUGE_VAL;
    else {
      char* end = nullptr;
      s.value = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != 0) return *why = "value: " + line, false;
    }
    out->push_back(std::move(s));
  }
  return true;
}

std::string Key(const Sample& s) {
  std::string k = s.name;
  for (const auto& [n, v] : s.labels) k += "|" + n + "=" + v;
  return k;
}

double Sum(const std::vector<Sample>& samples, const std::string& name) {
  double sum = 0;
  for (const auto& s : samples) sum += s.name == name ? s.value : 0;
  return sum;
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!KnotServer::Available()) GTEST_SKIP() << "knotd is not installed";
    KnotServer::Options options;
    options.zones = {"example.test"};
    auto knot = KnotServer::Start(options);
    ASSERT_TRUE(knot.has_value()) << knot.error().message;
    knot_ = std::move(*knot);
    dir_ = knot_->dir();
    auto port = milter::testing::FreeTcpPort();
    ASSERT_TRUE(port.has_value()) << port.error().message;
    socket_ = "inet:" + std::to_string(*port) + "@127.0.0.1";
    auto metrics_port = milter::testing::FreeTcpPort();
    ASSERT_TRUE(metrics_port.has_value()) << metrics_port.error().message;
    metrics_port_ = *metrics_port;
    config_ = dir_ + "/dkimrotor.conf";
    keystore_ = dir_ + "/keystore";
    std::ofstream out(config_);
    out << "milter: { socket = \"" << socket_ << "\"; stop_timeout = \"5s\"; };\n"
        << "signing: { internal_hosts = [\"127.0.0.1/32\", \"::1/128\"]; };\n"
        << "keystore: { directory = \"" << keystore_ << "\"; };\n"
        << "dns: { resolvers = [\"" << knot_->address() << "\"]; authoritative_port = " << knot_->port()
        << "; min_propagation = \"0s\"; poll = \"1s\"; timeout = \"2s\"; };\n"
        << "log: { level = \"info\"; };\n"
        << "metrics: { listen = \"127.0.0.1:" << metrics_port_ << "\"; };\n"
        << "domains = ( { domain = \"example.test\"; stream = \"mta1\"; algorithms = [\"rsa-sha256\", \"ed25519-sha256\"];\n"
        << "  bits = 1024; active_keys = 1; prepublish = 1; key_lifetime = \"30d\"; grace = \"7d\";\n"
        << "  publish_hook = \"" << DKIMROTOR_SOURCE_DIR << "/contrib/hooks/nsupdate\"; } );\n";
    out.close();
    env_ = knot_->NsupdateHookEnv();
  }

  void TearDown() override {
    for (pid_t* pid : {&prometheus_pid_, &pid_}) {
      if (*pid <= 0) continue;
      ::kill(*pid, SIGTERM);
      ::waitpid(*pid, nullptr, 0);
      *pid = -1;
    }
    if (!prometheus_dir_.empty()) std::filesystem::remove_all(prometheus_dir_);
  }

  keystore::testing::ProcessResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), DKIMROTOR_BINARY);
    auto r = RunProcess(args, env_);
    EXPECT_TRUE(r.has_value());
    return r ? *r : keystore::testing::ProcessResult{};
  }

  pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_file) {
    std::vector<std::string> env_strings;
    for (const auto& [k, v] : env_) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = -1;
    EXPECT_EQ(posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
    return pid;
  }

  void StartDaemon() {
    auto r = Cli({"rotate", "-c", config_, "--domain", "example.test"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    pid_ = Spawn({DKIMROTOR_BINARY, "run", "-c", config_}, log());
    ASSERT_TRUE(WaitFor([&] { return Get(metrics_port_, "/metrics").status == 200; }, std::chrono::seconds(20)))
        << "no /metrics: " << ReadText(log());
  }

  std::string log() const { return dir_ + "/daemon.log"; }

  bool WaitFor(const std::function<bool()>& done, std::chrono::seconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      if (Clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
  }

  // Sends one message; returns how many signatures it got.
  size_t SendMessage() {
    MilterClient::Options o;
    o.socket = socket_;
    auto client = MilterClient::Connect(o);
    EXPECT_TRUE(client.has_value()) << client.error().message;
    if (!client) return 0;
    auto r = client->SendMessage("127.0.0.1", "", kHeaders, kBody);
    EXPECT_TRUE(r.has_value()) << r.error().message;
    return r ? r->Find(Modification::Kind::kInsertHeader).size() : 0;
  }

  std::vector<Sample> Scrape() {
    HttpReply reply = Get(metrics_port_, "/metrics");
    EXPECT_EQ(reply.status, 200);
    std::vector<Sample> samples;
    std::string why;
    EXPECT_TRUE(Parse(reply.body, &samples, &why)) << why << "\n" << reply.body;
    return samples;
  }

  std::unique_ptr<KnotServer> knot_;
  std::string dir_, socket_, config_, keystore_, prometheus_dir_;
  uint16_t metrics_port_ = 0;
  std::map<std::string, std::string> env_;
  pid_t pid_ = -1;
  pid_t prometheus_pid_ = -1;
};

TEST_F(MetricsTest, ServesTheTextFormatAndOnlyOnMetrics) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  HttpReply reply = Get(metrics_port_, "/metrics");
  EXPECT_EQ(reply.content_type, "text/plain; version=0.0.4; charset=utf-8");
  for (const char* family : {"dkimrotor_build_info{version=\"", "dkimrotor_messages_total{outcome=\"reject\"}",
                             "# TYPE dkimrotor_sign_duration_seconds histogram", "dkimrotor_keys{",
                             "dkimrotor_rotation_due_seconds{domain=\"example.test\",algorithm=\"rsa-sha256\"}"})
    EXPECT_NE(reply.body.find(family), std::string::npos) << family << "\n" << reply.body;
  EXPECT_EQ(Get(metrics_port_, "/").status, 404);
  EXPECT_EQ(Get(metrics_port_, "/metricsx").status, 404);
}

// A real Prometheus scrapes the daemon every second; its API must come to the number of
// signatures made, and the daemon's key gauges must match `dkimrotor keys --json`.
TEST_F(MetricsTest, PrometheusSeesEverySignatureAndTheKeys) {
  if (::access(kPrometheus, X_OK) != 0) GTEST_SKIP() << kPrometheus << " is not installed (scripts/install-deps)";
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  constexpr int kMessages = 12;
  size_t signatures = 0;
  for (int i = 0; i < kMessages; ++i) signatures += SendMessage();
  EXPECT_EQ(signatures, 2u * kMessages);  // one rsa-sha256, one ed25519-sha256

  char tmpl[] = "/tmp/dkimrotor-prometheus-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  prometheus_dir_ = tmpl;
  auto port = milter::testing::FreeTcpPort();
  ASSERT_TRUE(port.has_value());
  {
    std::ofstream out(prometheus_dir_ + "/prometheus.yml");
    out << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        << "scrape_configs:\n  - job_name: dkimrotor\n    static_configs:\n"
        << "      - targets: ['127.0.0.1:" << metrics_port_ << "']\n";
  }
  prometheus_pid_ = Spawn({kPrometheus, "--config.file=" + prometheus_dir_ + "/prometheus.yml",
                           "--storage.tsdb.path=" + prometheus_dir_ + "/data",
                           "--web.listen-address=127.0.0.1:" + std::to_string(*port)},
                          prometheus_dir_ + "/prometheus.log");
  ASSERT_TRUE(WaitFor([&] { return Get(*port, "/-/ready").status == 200; }, std::chrono::seconds(60)))
      << ReadText(prometheus_dir_ + "/prometheus.log");

  auto query = [&](const std::string& encoded) {
    HttpReply r = Get(*port, "/api/v1/query?query=" + encoded);
    return nlohmann::json::parse(r.body, nullptr, false);
  };
  double seen = -1;
  const bool reached = WaitFor(
      [&] {
        auto j = query("sum%28dkimrotor_signatures_total%29");
        if (j.is_discarded() || j["status"] != "success" || j["data"]["result"].empty()) return false;
        seen = std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
        return seen == static_cast<double>(signatures);
      },
      std::chrono::seconds(60));
  EXPECT_TRUE(reached) << "Prometheus says " << seen << " signatures, we made " << signatures << "\n"
                       << ReadText(prometheus_dir_ + "/prometheus.log");

  auto messages = query("dkimrotor_messages_total%7Boutcome%3D%22signed%22%7D");
  ASSERT_FALSE(messages.is_discarded());
  ASSERT_FALSE(messages["data"]["result"].empty()) << messages.dump();
  EXPECT_EQ(messages["data"]["result"][0]["value"][1], std::to_string(kMessages));
  // A rotation through the daemon generates new spares and runs the publish hook for them.
  auto rotated = Cli({"rotate", "-c", config_, "--domain", "example.test"});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.output << ReadText(log());
  nlohmann::json hooks;
  EXPECT_TRUE(WaitFor(
      [&] {
        hooks = query("dkimrotor_hook_runs_total%7Baction%3D%22publish%22%2Cresult%3D%22ok%22%7D");
        return !hooks.is_discarded() && !hooks["data"]["result"].empty();
      },
      std::chrono::seconds(60)))
      << hooks.dump() << ReadText(log());
  auto dns = query("dkimrotor_dns_checks_total");
  EXPECT_FALSE(dns.is_discarded() || dns["data"]["result"].empty()) << dns.dump();
  auto up = query("up");
  ASSERT_FALSE(up["data"]["result"].empty());
  EXPECT_EQ(up["data"]["result"][0]["value"][1], "1");

  // The key gauges against `keys --json`, through the daemon.
  auto r = Cli({"keys", "-c", config_, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto keys = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_FALSE(keys.is_discarded()) << r.output;
  std::map<std::string, double> expected;  // algorithm|state
  for (const char* a : {"rsa-sha256", "ed25519-sha256"})
    for (const char* s : {"pending", "ready", "active", "retiring", "revoked"}) expected[std::string(a) + "|" + s] = 0;
  for (const auto& k : keys["domains"][0]["keys"])
    ++expected[k["algorithm"].get<std::string>() + "|" + k["state"].get<std::string>()];
  std::map<std::string, double> gauges;
  for (const auto& s : Scrape())
    if (s.name == "dkimrotor_keys" && s.labels.at("domain") == "example.test")
      gauges[s.labels.at("algorithm") + "|" + s.labels.at("state")] = s.value;
  EXPECT_EQ(gauges, expected);
  EXPECT_EQ(gauges["rsa-sha256|active"], 1);
}

// Reloads one after another while a thread scrapes and messages keep coming: every page is
// well-formed and no counter goes back.
TEST_F(MetricsTest, ScrapesDuringReloadsAreWellFormedAndCountersNeverDecrease) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  std::atomic<bool> stop{false};
  std::thread reloads([&] {
    while (!stop) {
      ::kill(pid_, SIGHUP);
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
  });
  std::thread mail([&] {
    while (!stop) SendMessage();
  });
  std::map<std::string, double> last;
  int pages = 0;
  for (const auto deadline = Clock::now() + std::chrono::seconds(5); Clock::now() < deadline; ++pages) {
    for (const auto& s : Scrape()) {
      const bool counter = s.name.ends_with("_total") || s.name.ends_with("_bucket") ||
                           s.name.ends_with("_count") || s.name.ends_with("_sum");
      if (!counter) continue;
      const std::string key = Key(s);
      if (auto it = last.find(key); it != last.end()) {
        EXPECT_GE(s.value, it->second) << key;
      }
      last[key] = s.value;
    }
  }
  stop = true;
  reloads.join();
  mail.join();
  EXPECT_GT(pages, 10);
  const auto final_page = Scrape();
  EXPECT_GT(Sum(final_page, "dkimrotor_signatures_total"), 0);
  EXPECT_NE(ReadText(log()).find("configuration reloaded"), std::string::npos);
}

}  // namespace
}  // namespace dkimrotor::metrics

#include "daemon/metrics_page.h"

#include <map>
#include <optional>
#include <tuple>

#include "keystore/rotation/rotation_engine.h"
#include "metrics/text_format.h"
#include "signer/algorithm.h"

namespace dkimrotor::daemon {
namespace {

constexpr keystore::KeyState kStates[] = {keystore::KeyState::kPending, keystore::KeyState::kReady,
                                          keystore::KeyState::kActive, keystore::KeyState::kRetiring,
                                          keystore::KeyState::kRevoked};

void Counters(metrics::TextWriter& w, std::string_view name, std::string_view help,
              const std::vector<std::string_view>& label_names, const util::CounterFamily& family) {
  w.Family(name, "counter", help);
  for (const auto& [values, count] : family.Read()) {
    metrics::LabelPairs labels;
    for (size_t i = 0; i < label_names.size() && i < values.size(); ++i) labels.emplace_back(label_names[i], values[i]);
    w.Sample(name, labels, count);
  }
}

void Keys(metrics::TextWriter& w, const std::vector<keystore::KeyInfo>& keys, const DaemonSettings& settings,
          keystore::TimePoint now) {
  // Every configured stream shows all five states, 0 included, so an alert on "no active key"
  // sees a 0 rather than a missing series.
  std::map<std::tuple<std::string, std::string, std::string>, int64_t> counts;
  for (const auto& p : settings.rotation.streams)
    for (keystore::KeyState s : kStates)
      counts[{p.domain, std::string(signer::AlgorithmName(p.algorithm)), std::string(keystore::KeyStateName(s))}] = 0;
  for (const auto& k : keys)
    ++counts[{k.domain, std::string(signer::AlgorithmName(k.algorithm)), std::string(keystore::KeyStateName(k.state))}];
  w.Family("dkimrotor_keys", "gauge", "Keys in each state, by domain and algorithm.");
  for (const auto& [labels, n] : counts)
    w.Sample("dkimrotor_keys",
             {{"domain", std::get<0>(labels)}, {"algorithm", std::get<1>(labels)}, {"state", std::get<2>(labels)}}, n);

  w.Family("dkimrotor_rotation_due_seconds", "gauge",
           "Seconds until the stream's next rotation step; negative when it is late.");
  for (const auto& p : settings.rotation.streams) {
    std::optional<keystore::TimePoint> due;
    const bool has_hook = settings.world.hooks.count(p.domain) != 0;
    for (const auto& k : keys) {
      if (k.domain != p.domain || k.algorithm != p.algorithm) continue;
      if (k.state != keystore::KeyState::kActive && k.state != keystore::KeyState::kReady) continue;
      auto next = keystore::NextStepOf(k, keys, p, settings.rotation.min_propagation, has_hook, now);
      if (next.when && (!due || *next.when < *due)) due = next.when;
    }
    if (!due) continue;  // no step scheduled (no active key yet)
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(*due - now).count();
    const std::string algorithm(signer::AlgorithmName(p.algorithm));
    w.Sample("dkimrotor_rotation_due_seconds", {{"domain", p.domain}, {"algorithm", algorithm}},
             static_cast<int64_t>(seconds));
  }
}

}  // namespace

std::string RenderMetrics(const MetricsSources& in) {
  metrics::TextWriter w;
  w.Family("dkimrotor_build_info", "gauge", "Always 1; the version is in the label.");
  w.Sample("dkimrotor_build_info", {{"version", in.version}}, uint64_t{1});

  if (in.service) {
    const session::Counters& c = in.service->counters();
    w.Family("dkimrotor_messages_total", "counter", "Messages by outcome.");
    w.Sample("dkimrotor_messages_total", {{"outcome", "signed"}}, c.signed_messages.load(std::memory_order_relaxed));
    w.Sample("dkimrotor_messages_total", {{"outcome", "unsigned"}}, c.unsigned_messages.load(std::memory_order_relaxed));
    w.Sample("dkimrotor_messages_total", {{"outcome", "tempfail"}}, c.tempfailed_messages.load(std::memory_order_relaxed));
    w.Sample("dkimrotor_messages_total", {{"outcome", "reject"}}, c.rejected_messages.load(std::memory_order_relaxed));
    w.Family("dkimrotor_sign_duration_seconds", "histogram",
             "Time to sign a message once its body is in: header hash and private-key operations.");
    w.Histogram("dkimrotor_sign_duration_seconds", {}, in.service->sign_duration().Read());
  }
  if (in.snapshots)
    Counters(w, "dkimrotor_signatures_total", "Signatures made, by key.", {"domain", "selector", "algorithm"},
             in.snapshots->signature_counters());
  if (in.world) {
    Counters(w, "dkimrotor_hook_runs_total", "Publish hook runs by action and result.",
             {"domain", "action", "result"}, in.world->hook_runs);
    Counters(w, "dkimrotor_dns_checks_total", "DNS checks of key records by result.", {"domain", "result"},
             in.world->dns_checks);
  }
  if (in.keys && in.settings) {
    const keystore::TimePoint now =
        in.now ? in.now() : std::chrono::time_point_cast<std::chrono::seconds>(keystore::Clock::now());
    Keys(w, in.keys(), in.settings(), now);
  }
  return w.Take();
}

}  // namespace dkimrotor::daemon

#include "control/key_report.h"

#include <algorithm>
#include <map>
#include <optional>
#include <tuple>

#include "signer/algorithm.h"

namespace dkimrotor::control {
namespace {

using keystore::KeyInfo;
using keystore::KeyState;

const keystore::StreamPolicy* PolicyFor(const keystore::RotationOptions& r, const KeyInfo& k) {
  for (const auto& p : r.streams)
    if (p.domain == k.domain && p.algorithm == k.algorithm) return &p;
  return nullptr;
}

std::optional<keystore::NextStep> NextOf(const KeyReportInput& in, const KeyInfo& k) {
  const auto* p = PolicyFor(*in.rotation, k);
  if (!p) return std::nullopt;
  return keystore::NextStepOf(k, *in.keys, *p, in.rotation->min_propagation, in.has_hook(k.domain), in.now);
}

std::map<std::string, std::vector<const KeyInfo*>> ByDomain(const KeyReportInput& in) {
  std::map<std::string, std::vector<const KeyInfo*>> by_domain;
  for (const auto& d : in.domains) by_domain[d];
  for (const auto& k : *in.keys) by_domain[k.domain].push_back(&k);
  return by_domain;
}

nlohmann::json TimeOrNull(const std::optional<keystore::TimePoint>& t) {
  return t ? nlohmann::json(keystore::Rfc3339(*t)) : nlohmann::json();
}

}  // namespace

nlohmann::json KeysReport(const KeyReportInput& in) {
  nlohmann::json root;
  root["domains"] = nlohmann::json::array();
  for (const auto& [domain, keys] : ByDomain(in)) {
    nlohmann::json d;
    d["domain"] = domain;
    d["keys"] = nlohmann::json::array();
    for (const KeyInfo* k : keys) {
      nlohmann::json j;
      j["selector"] = k->selector;
      j["algorithm"] = std::string(signer::AlgorithmName(k->algorithm));
      j["bits"] = k->bits;
      j["state"] = std::string(keystore::KeyStateName(k->state));
      j["created"] = keystore::Rfc3339(k->created);
      j["since"] = keystore::Rfc3339(k->state_since);
      // What the engine last saw in DNS when it was not the expected record.
      j["dns_problem"] = k->dns_problem.empty() ? nlohmann::json() : nlohmann::json(k->dns_problem);
      j["dns_mismatch_since"] =
          k->dns_mismatch_since ? nlohmann::json(keystore::Rfc3339(*k->dns_mismatch_since)) : nlohmann::json();
      if (auto next = NextOf(in, *k)) {
        j["next_step"] = next->what;
        j["next_step_at"] = next->when ? nlohmann::json(keystore::Rfc3339(*next->when)) : nlohmann::json();
        j["rotation_late"] = next->late;
      }
      d["keys"].push_back(std::move(j));
    }
    root["domains"].push_back(std::move(d));
  }
  return root;
}

nlohmann::json DomainSummaries(const KeyReportInput& in) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [domain, keys] : ByDomain(in)) {
    nlohmann::json d;
    d["domain"] = domain;
    d["problems"] = nlohmann::json::array();
    int active = 0;
    std::optional<keystore::TimePoint> next_at;
    std::string next_what;
    for (const KeyInfo* k : keys) {
      const std::string name = k->selector + "._domainkey." + k->domain;
      active += k->state == KeyState::kActive ? 1 : 0;
      auto next = NextOf(in, *k);
      if (!next) continue;
      if (next->late) d["problems"].push_back(name + ": rotation late (" + next->what + ")");
      if (!k->dns_problem.empty() && k->state != KeyState::kRevoked)
        d["problems"].push_back(name + " (" + std::string(keystore::KeyStateName(k->state)) +
                                "): DNS does not serve the expected record: " + k->dns_problem);
      if (k->emergency && k->state == KeyState::kRetiring)
        d["problems"].push_back(name + ": revoked in an emergency, its revocation not yet published");
      if (next->when && (!next_at || *next->when < *next_at)) {
        next_at = next->when;
        next_what = name + ": " + next->what;
      }
    }
    for (const auto& p : in.rotation->streams) {
      if (p.domain != domain) continue;
      bool signs = false;
      for (const KeyInfo* k : keys) signs |= k->algorithm == p.algorithm && k->state == KeyState::kActive;
      if (!signs)
        d["problems"].push_back("no active " + std::string(signer::AlgorithmName(p.algorithm)) +
                                " key: mail goes out without that signature");
    }
    d["active_keys"] = active;
    d["next_step"] = next_what.empty() ? nlohmann::json() : nlohmann::json(next_what);
    d["next_step_at"] = next_at ? nlohmann::json(keystore::Rfc3339(*next_at)) : nlohmann::json();
    out.push_back(std::move(d));
  }
  return out;
}

nlohmann::json KeyHistory(const std::vector<KeyInfo>& keys, const std::vector<std::string>& domains) {
  std::map<std::string, std::vector<const KeyInfo*>> by_domain;
  for (const auto& d : domains) by_domain[d];
  for (const auto& k : keys) by_domain[k.domain].push_back(&k);
  nlohmann::json root;
  root["domains"] = nlohmann::json::array();
  for (auto& [domain, list] : by_domain) {
    // Keys made in the same second (one per algorithm and spare) keep a stable order.
    std::sort(list.begin(), list.end(), [](const KeyInfo* a, const KeyInfo* b) {
      return std::tie(a->created, a->selector) < std::tie(b->created, b->selector);
    });
    nlohmann::json d;
    d["domain"] = domain;
    d["keys"] = nlohmann::json::array();
    for (const KeyInfo* k : list) {
      d["keys"].push_back(nlohmann::json{{"selector", k->selector},
                           {"algorithm", std::string(signer::AlgorithmName(k->algorithm))},
                           {"bits", k->bits},
                           {"created", keystore::Rfc3339(k->created)},
                           {"activated", TimeOrNull(k->activated)},
                           {"retired", TimeOrNull(k->retired)},
                           {"revoked", TimeOrNull(k->revoked)},
                           {"emergency", k->emergency},
                           {"state", std::string(keystore::KeyStateName(k->state))}});
    }
    root["domains"].push_back(std::move(d));
  }
  return root;
}

}  // namespace dkimrotor::control

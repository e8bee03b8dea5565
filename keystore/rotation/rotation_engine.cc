#include "keystore/rotation/rotation_engine.h"

#include <algorithm>
#include <functional>

#include "signer/signing_key.h"

namespace dkimrotor::keystore {
namespace {

bool SameStream(const KeyInfo& k, const StreamPolicy& p) {
  return k.domain == p.domain && k.algorithm == p.algorithm;
}

bool IsLive(KeyState s) {
  return s == KeyState::kPending || s == KeyState::kReady || s == KeyState::kActive;
}

KeyInfo* Find(std::vector<KeyInfo>& keys, const std::string& domain, const std::string& selector) {
  for (auto& k : keys)
    if (k.domain == domain && k.selector == selector) return &k;
  return nullptr;
}

const KeyInfo* Find(const std::vector<KeyInfo>& keys, const std::string& domain, const std::string& selector) {
  for (const auto& k : keys)
    if (k.domain == domain && k.selector == selector) return &k;
  return nullptr;
}

std::string Id(const KeyInfo& k) { return k.domain + "/" + k.selector; }
std::string Name(const KeyInfo& k) { return k.selector + "._domainkey." + k.domain; }

std::string_view ObservationName(DnsObservation seen) {
  switch (seen) {
    case DnsObservation::kMatches: return "matches";
    case DnsObservation::kRevoked: return "revoked";
    case DnsObservation::kMissing: return "missing";
    case DnsObservation::kWrong: return "wrong";
    case DnsObservation::kTemporaryFailure: return "temporary failure";
  }
  return "unknown";
}

// A retiring key whose grace is over (or cut short) is being revoked: DNS should serve "p=".
bool InRevocation(const KeyInfo& k, const StreamPolicy& p, TimePoint now) {
  return k.state == KeyState::kRetiring &&
         (k.emergency || now - k.retired.value_or(k.state_since) >= p.grace);
}

// Passes an active key's record must be seen wrong on, besides min_propagation passing,
// before the key is taken out of signing: one odd answer is not enough.
constexpr int kWrongPassesToDeactivate = 3;

}  // namespace

std::string KeyRecordValue(const KeyInfo& key) {
  return "v=DKIM1; k=" + std::string(signer::KeyTypeName(key.algorithm)) + "; p=" + key.public_key;
}

std::string RevokedRecordValue() { return "v=DKIM1; p="; }

RotationEngine::RotationEngine(RotationOptions options, std::vector<KeyInfo> keys,
                               RotationWorld* world, SnapshotHolder* snapshots)
    : options_(std::move(options)), world_(world), snapshots_(snapshots), keys_(std::move(keys)) {}

std::vector<KeyInfo> RotationEngine::Keys() const {
  util::MutexLock lock(&mu_);
  return keys_;
}

util::Status RotationEngine::Start() {
  for (const auto& k : keys()) {
    if (k.state != KeyState::kActive) continue;
    auto key = world_->LoadKey(k);
    if (!key) {
      world_->Log(LogLevel::kError, "active key " + k.selector + "._domainkey." + k.domain +
                                        " cannot be loaded and will not sign: " + key.error().message);
      continue;
    }
    loaded_[k.domain + "/" + k.selector] = *key;
  }
  PublishSnapshot();
  return util::Ok();
}

void RotationEngine::SweepKeyFiles() {
  const KeyFileSweep sweep = world_->SweepKeyFiles(keys());
  for (const auto& path : sweep.destroyed_revoked)
    world_->Log(LogLevel::kWarning, "destroyed " + path +
                                        ": the private key of a revoked key was still on disk "
                                        "(a crash between its revocation and its destruction)");
  for (const auto& path : sweep.destroyed_partial)
    world_->Log(LogLevel::kWarning, "destroyed " + path + ": a key file left half-written by a crash");
  for (const auto& path : sweep.orphans)
    world_->Log(LogLevel::kWarning,
                "key file " + path + " belongs to no key of the state; left in place. A crash while "
                "a key was being generated leaves such a file: remove it. If state.json was restored "
                "from a backup, it may be a live key whose selector is in DNS: import it again with "
                "`dkimrotor keys import` or revoke its selector before removing it");
  for (const auto& error : sweep.errors)
    world_->Log(LogLevel::kError, "start-up sweep of the key files: " + error);
}

// Every change is made on a copy of the keys and goes through here: saved first, then made
// current, then audited. A failed save leaves memory, disk and the audit log as they were.
util::Status RotationEngine::Commit(std::vector<KeyInfo> next) {
  if (auto st = world_->SaveState(next); !st) {
    audits_.clear();
    return st;
  }
  {
    util::MutexLock lock(&mu_);
    keys_ = std::move(next);
  }
  for (const auto& a : audits_) world_->Audit(a.key, a.from, a.to);
  audits_.clear();
  return util::Ok();
}

void RotationEngine::Transition(KeyInfo& key, KeyState to, TimePoint now) {
  KeyState from = key.state;
  key.state = to;
  key.state_since = now;
  if (to == KeyState::kActive) key.activated = now;
  if (to == KeyState::kRetiring) key.retired = now;
  if (to == KeyState::kRevoked) key.revoked = now;
  audits_.push_back({key, from, to});
}

std::string RotationEngine::NewSelector(const StreamPolicy& p, TimePoint now) const {
  if (!p.slots.empty()) return FreeSlot(p, now);
  signer::SelectorValues values;
  values.stream = p.stream;
  values.algorithm = p.algorithm;
  values.bits = p.bits;
  values.date = std::chrono::year_month_day{std::chrono::floor<std::chrono::days>(now)};  // UTC
  values.n = 1;
  for (const auto& k : keys())
    if (SameStream(k, p)) ++values.n;
  const std::string s = p.selector_format.Expand(values);
  // Never reuse a selector, not even a revoked one: add -2, -3, ... on a collision.
  std::string candidate = s;
  for (int suffix = 2;; ++suffix) {
    bool taken = false;
    for (const auto& k : keys()) taken |= (k.domain == p.domain && k.selector == candidate);
    if (!taken) return candidate;
    candidate = s + "-" + std::to_string(suffix);
  }
}

// A delegated domain's slot for a new key: one no key of the domain (of any algorithm) has held
// yet, in the order configured, else the one whose key was revoked longest ago, at least grace
// ago; "" when every slot is taken.
std::string RotationEngine::FreeSlot(const StreamPolicy& p, TimePoint now) const {
  std::string best;
  std::optional<TimePoint> best_since;
  for (const auto& slot : p.slots) {
    const KeyInfo* holder = Find(keys(), p.domain, slot);
    if (holder == nullptr) return slot;
    if (holder->state != KeyState::kRevoked) continue;
    const TimePoint since = holder->revoked.value_or(holder->state_since);
    if (now - since < p.grace) continue;
    if (!best_since || since < *best_since) {
      best = slot;
      best_since = since;
    }
  }
  return best;
}

util::Status RotationEngine::Generate(const StreamPolicy& p, TimePoint now) {
  KeyInfo k;
  k.domain = p.domain;
  k.selector = NewSelector(p, now);
  if (k.selector.empty()) return util::Err(util::ErrorCode::kNotFound, "no free slot");
  RETURN_IF_ERROR(signer::ValidateDnsName(k.selector, "generated selector"));
  k.algorithm = p.algorithm;
  k.bits = p.algorithm == signer::Algorithm::kRsaSha256 ? p.bits : 256;
  k.state = KeyState::kPending;
  k.created = now;
  k.state_since = now;
  // The key file is written first: a crash before the state is saved leaves an unused file,
  // never a state entry without its key.
  ASSIGN_OR_RETURN(auto key, world_->CreateKey(k));
  k.public_key = key->dkim_public_key();
  std::vector<KeyInfo> next = keys();
  // A reused slot: the revoked key that held it leaves the state (its private key is gone, its
  // history stays in audit.log), so a selector still names one key.
  std::erase_if(next, [&](const KeyInfo& old) { return old.domain == k.domain && old.selector == k.selector; });
  const std::string id = Id(k);
  for (auto* m : {&retries_, &republished_}) {
    m->erase(id);
    m->erase(id + "/revoke");
  }
  wrong_passes_.erase(id);
  pending_logged_.erase(id);
  next.push_back(k);
  RETURN_IF_ERROR(Commit(std::move(next)));
  loaded_[k.domain + "/" + k.selector] = std::move(key);
  world_->Log(LogLevel::kInfo, "generated " + std::string(signer::AlgorithmName(k.algorithm)) + " key " + k.selector + "._domainkey." +
                                   k.domain + " (pending: waiting for DNS)");
  return util::Ok();
}

bool RotationEngine::PublishWithBackoff(KeyInfo& key, bool revoke, TimePoint now) {
  const std::string id = key.domain + "/" + key.selector + (revoke ? "/revoke" : "");
  Retry& r = retries_[id];
  if (r.failures > 0 && now < r.next) return false;
  auto st = world_->Publish(key, revoke, revoke ? RevokedRecordValue() : KeyRecordValue(key));
  if (st) {
    retries_.erase(id);
    return true;
  }
  ++r.failures;
  auto delay = options_.retry_min * (1LL << std::min(r.failures - 1, 20));
  r.next = now + std::min<std::chrono::seconds>(delay, options_.retry_max);
  const std::string what = std::string(revoke ? "revoke" : "publish") + " hook failed";
  const std::string detail = " (attempt " + std::to_string(r.failures) + ", next try at " + Rfc3339(r.next) +
                             "): " + st.error().message;
  world_->Log(LogLevel::kWarning, what + " for " + Name(key) + detail);
  // Kept with the key, so `keys` and `check` say why it waits (another server's key in the
  // record, a provider that refuses the credentials, ...), not only the log.
  key.dns_problem = what + detail;
  return false;
}

bool RotationEngine::NoteDns(KeyInfo& key, DnsObservation seen, const std::string& detail,
                             TimePoint now) {
  const std::string id = Id(key);
  if (seen == DnsObservation::kMatches) {
    republished_.erase(id);
    wrong_passes_.erase(id);
    const bool dirty = key.dns_mismatch_since || !key.dns_problem.empty();
    key.dns_mismatch_since.reset();
    key.dns_problem.clear();
    return dirty;
  }
  ++wrong_passes_[id];
  std::string problem = std::string(ObservationName(seen)) + (detail.empty() ? "" : ": " + detail);
  bool dirty = false;
  if (!key.dns_mismatch_since) {
    key.dns_mismatch_since = now;
    dirty = true;
  }
  if (problem != key.dns_problem) {
    key.dns_problem = std::move(problem);
    dirty = true;
  }
  return dirty;
}

// DNS gets a fair chance first: the record must have been wrong for retry_min since the last
// publish, doubling with each republish that did not help, up to retry_max. A key published
// by hand before a hook was configured counts from when the mismatch was first seen.
bool RotationEngine::Republish(KeyInfo& key, bool revoke, TimePoint now) {
  const std::optional<TimePoint>& last = revoke ? key.revoke_published : key.published;
  if (!world_->CanPublish(key.domain) || !key.dns_mismatch_since) return false;
  if (!last && (revoke || key.state == KeyState::kPending)) return false;  // first publish pending
  Retry& r = republished_[Id(key)];
  const auto wait = std::min<std::chrono::seconds>(
      options_.retry_min * (1LL << std::min(r.failures, 20)), options_.retry_max);
  const TimePoint since = last ? std::max(*last, *key.dns_mismatch_since) : *key.dns_mismatch_since;
  if (now - since < wait) return false;
  if (!PublishWithBackoff(key, revoke, now)) return false;
  ++r.failures;
  (revoke ? key.revoke_published : key.published) = now;
  world_->Log(LogLevel::kWarning,
              "DNS does not serve the " + std::string(revoke ? "revocation" : "record") + " of " +
                  Name(key) + " (" + key.dns_problem + ", since " + Rfc3339(*key.dns_mismatch_since) +
                  "): ran the " + (revoke ? "revoke" : "publish") + " hook again (republish " +
                  std::to_string(r.failures) + ")");
  return true;
}

bool RotationEngine::PersistentlyWrong(const KeyInfo& key, TimePoint now) const {
  auto passes = wrong_passes_.find(Id(key));
  return key.dns_mismatch_since && now - *key.dns_mismatch_since >= options_.min_propagation &&
         passes != wrong_passes_.end() && passes->second >= kWrongPassesToDeactivate;
}

void RotationEngine::WarnIfPendingTooLong(const KeyInfo& key, TimePoint now) {
  const auto expected = std::max<std::chrono::seconds>(options_.min_propagation, std::chrono::hours(1)) +
                        3 * options_.poll;
  if (now - key.state_since <= expected) return;
  auto logged = pending_logged_.find(Id(key));
  if (logged != pending_logged_.end() && now - logged->second < std::chrono::hours(1)) return;
  pending_logged_[Id(key)] = now;
  std::string why = key.dns_problem.rfind("publish hook failed", 0) == 0 ? "its " + key.dns_problem
                    : !key.dns_problem.empty() ? "DNS: " + key.dns_problem
                    : key.dns_ok_since      ? "DNS serves it since " + Rfc3339(*key.dns_ok_since) +
                                             "; it is ready " + Rfc3339(*key.dns_ok_since + options_.min_propagation)
                    : !key.published && world_->CanPublish(key.domain) ? "the publish hook has not succeeded yet"
                    : !key.published ? "its record is not published yet (see dkimrotor dns)"
                                     : "no DNS answer yet";
  world_->Log(LogLevel::kWarning, Name(key) + " has been pending since " + Rfc3339(key.state_since) +
                                      ", longer than expected: " + why);
}

util::Status RotationEngine::Step() {
  const TimePoint now = world_->Now();
  bool changed = false;
  util::Status result;
  for (const auto& p : options_.streams) {
    auto st = StepStream(p, now, /*force_rotation=*/false, &changed);
    if (!st && result) result = st;  // go on with the other streams; report the first error
  }
  if (changed) PublishSnapshot();
  return result;
}

util::Status RotationEngine::Rotate(const std::string& domain) {
  const TimePoint now = world_->Now();
  bool changed = false;
  bool known = false;
  for (const auto& p : options_.streams) {
    if (p.domain != domain) continue;
    known = true;
    RETURN_IF_ERROR(StepStream(p, now, /*force_rotation=*/true, &changed));
  }
  if (!known)
    return util::Err(util::ErrorCode::kNotFound, "domain " + domain + " is not configured");
  if (changed) PublishSnapshot();
  return util::Ok();
}

util::Status RotationEngine::StepStream(const StreamPolicy& p, TimePoint now, bool force_rotation,
                                        bool* changed) {
  const std::string stream_name = p.domain + " " + std::string(signer::AlgorithmName(p.algorithm));
  // 1. Keep active_keys + prepublish keys on their way or in service.
  int live = 0;
  for (const auto& k : keys()) live += (SameStream(k, p) && IsLive(k.state)) ? 1 : 0;
  for (; live < p.active_keys + p.prepublish; ++live) {
    if (!p.slots.empty() && FreeSlot(p, now).empty()) {
      // A delegated domain waits for a slot: the revocations below free them, grace after.
      auto logged = late_logged_.find(stream_name + " slots");
      if (logged == late_logged_.end() || now - logged->second >= std::chrono::hours(24)) {
        late_logged_[stream_name + " slots"] = now;
        world_->Log(LogLevel::kWarning,
                    "no free slot for a new key of " + stream_name + ": each of the " +
                        std::to_string(p.slots.size()) +
                        " slots holds a key, or one revoked less than grace ago; add slots "
                        "(and their CNAMEs) to delegation.slots if this lasts");
      }
      break;
    }
    RETURN_IF_ERROR(Generate(p, now));
  }

  // 2. Every key that should be in DNS: publish it once, then check it at every pass. Pending
  // keys become ready once DNS has served exactly them for min_propagation; a ready key that no
  // longer matches goes back to pending; a wrong record is republished (Republish).
  std::vector<std::string> watched;
  for (const auto& k : keys())
    if (SameStream(k, p) && (IsLive(k.state) || (k.state == KeyState::kRetiring && !InRevocation(k, p, now))))
      watched.push_back(k.selector);
  for (const auto& selector : watched) {
    std::vector<KeyInfo> next = keys();
    KeyInfo& k = *Find(next, p.domain, selector);
    bool dirty = false;
    if (world_->CanPublish(p.domain) && !k.published && k.state == KeyState::kPending) {
      const std::string problem = k.dns_problem;
      if (!PublishWithBackoff(k, false, now)) {
        if (k.dns_problem != problem) RETURN_IF_ERROR(Commit(std::move(next)));  // why it failed
        continue;
      }
      k.published = now;
      dirty = true;
    }
    std::string detail;
    const DnsObservation seen = world_->CheckDns(k, /*expect_revoked=*/false, &detail);
    if (seen == DnsObservation::kTemporaryFailure) {
      world_->Log(LogLevel::kDebug, "DNS check of " + Name(k) + " failed for now: " + detail);
      // Only a pending key records it, to say why it waits; nothing else changes.
      if (k.state == KeyState::kPending && !k.dns_mismatch_since) {
        std::string problem = "temporary failure: " + detail;
        dirty |= problem != k.dns_problem;
        k.dns_problem = std::move(problem);
      }
    } else {
      dirty |= NoteDns(k, seen, detail, now);
      if (seen == DnsObservation::kMatches) {
        if (k.state == KeyState::kPending && !k.dns_ok_since) {
          k.dns_ok_since = now;
          dirty = true;
        }
        if (k.state == KeyState::kPending && now - *k.dns_ok_since >= options_.min_propagation) {
          Transition(k, KeyState::kReady, now);
          dirty = true;
        }
      } else {
        if (k.dns_ok_since && k.state == KeyState::kPending) {
          k.dns_ok_since.reset();  // propagation starts over
          dirty = true;
        }
        if (k.state == KeyState::kReady) {
          k.dns_ok_since.reset();
          Transition(k, KeyState::kPending, now);
          dirty = true;
          world_->Log(LogLevel::kWarning,
                      "ready key " + Name(k) + " is no longer served by DNS (" + k.dns_problem +
                          "): back to pending; it activates only once DNS has served it again for " +
                          std::to_string(options_.min_propagation.count()) + "s");
        } else {
          world_->Log(LogLevel::kDebug, "DNS does not serve " + Name(k) + " as expected: " + detail);
        }
        dirty |= Republish(k, /*revoke=*/false, now);
      }
    }
    if (k.state == KeyState::kPending) WarnIfPendingTooLong(k, now);
    else pending_logged_.erase(Id(k));
    if (!dirty) continue;
    RETURN_IF_ERROR(Commit(std::move(next)));
  }

  // 3. Activation: fill up to active_keys, and every key_lifetime/active_keys replace the
  // oldest active key with the oldest ready one, in one saved change.
  {
    std::vector<KeyInfo> next = keys();
    auto collect = [&](KeyState s, auto key_time) {
      std::vector<KeyInfo*> out;
      for (auto& k : next)
        if (SameStream(k, p) && k.state == s) out.push_back(&k);
      std::sort(out.begin(), out.end(), [&](KeyInfo* a, KeyInfo* b) {
        return std::pair(key_time(*a), a->selector) < std::pair(key_time(*b), b->selector);
      });
      return out;
    };
    auto by_activation = [](const KeyInfo& k) { return k.activated.value_or(k.state_since); };
    auto by_readiness = [](const KeyInfo& k) { return k.state_since; };
    std::vector<KeyInfo*> active = collect(KeyState::kActive, by_activation);
    std::vector<KeyInfo*> ready = collect(KeyState::kReady, by_readiness);
    bool dirty = false;
    // An active key DNS has not served for min_propagation fails verification wherever it
    // signs: it retires if another verified key can sign (an active one whose record is right,
    // or a ready key, which step 2 has just checked again), and is republished in step 2.
    size_t verified = 0;
    for (KeyInfo* k : active) verified += k->dns_mismatch_since ? 0 : 1;
    size_t spares = ready.size();
    for (auto it = active.begin(); it != active.end();) {
      KeyInfo& k = **it;
      if (!PersistentlyWrong(k, now)) {
        ++it;
        continue;
      }
      if (verified + spares == 0) {
        world_->Log(LogLevel::kError,
                    Name(k) + " signs, but DNS has not served its key since " +
                        Rfc3339(*k.dns_mismatch_since) + " (" + k.dns_problem +
                        "), so its signatures fail; no other verified key of " + stream_name +
                        " can take over, so it goes on signing");
        ++it;
        continue;
      }
      if (spares > 0) --spares;  // the fill below activates one in its place
      Transition(k, KeyState::kRetiring, now);
      dirty = true;
      world_->Log(LogLevel::kError, Name(k) + " no longer signs: DNS has not served its key since " +
                                        Rfc3339(*k.dns_mismatch_since) + " (" + k.dns_problem +
                                        "); it retires and is republished");
      it = active.erase(it);
    }
    size_t r = 0;
    while (static_cast<int>(active.size()) < p.active_keys && r < ready.size()) {
      Transition(*ready[r], KeyState::kActive, now);
      active.push_back(ready[r++]);
      dirty = true;
    }
    for (size_t a = 0; static_cast<int>(active.size() - a) > p.active_keys; ++a) {
      Transition(*active[a], KeyState::kRetiring, now);  // active_keys lowered
      dirty = true;
    }
    if (!dirty && !active.empty() && static_cast<int>(active.size()) == p.active_keys) {
      TimePoint last{};
      for (KeyInfo* k : active) last = std::max(last, by_activation(*k));
      const TimePoint due = last + std::chrono::duration_cast<std::chrono::seconds>(
                                       p.key_lifetime / p.active_keys);
      if (force_rotation || now >= due) {
        if (r < ready.size()) {
          Transition(*ready[r], KeyState::kActive, now);
          Transition(*active.front(), KeyState::kRetiring, now);
          dirty = true;
          late_logged_.erase(stream_name);
        } else {
          auto logged = late_logged_.find(stream_name);
          if (logged == late_logged_.end() || now - logged->second >= std::chrono::hours(24)) {
            late_logged_[stream_name] = now;
            world_->Log(LogLevel::kWarning,
                        "rotation of " + stream_name + " is late (due " + Rfc3339(due) +
                            "): no key is ready, so the current keys go on signing");
          }
        }
      }
    }
    if (dirty) {
      RETURN_IF_ERROR(Commit(std::move(next)));
      *changed = true;
    }
  }

  // 4. Retiring keys past their grace: revoke in DNS, and once DNS shows it, destroy the key.
  std::vector<std::string> retiring;
  for (const auto& k : keys())
    if (SameStream(k, p) && k.state == KeyState::kRetiring) retiring.push_back(k.selector);
  for (const auto& selector : retiring) {
    std::vector<KeyInfo> next = keys();
    KeyInfo& k = *Find(next, p.domain, selector);
    if (!InRevocation(k, p, now)) continue;
    bool dirty = false;
    if (world_->CanPublish(p.domain) && !k.revoke_published) {
      const std::string problem = k.dns_problem;
      if (!PublishWithBackoff(k, true, now)) {
        if (k.dns_problem != problem) RETURN_IF_ERROR(Commit(std::move(next)));  // why it failed
        continue;
      }
      k.revoke_published = now;
      // What was noted about the key's own record says nothing about the revocation.
      k.dns_mismatch_since.reset();
      k.dns_problem.clear();
      republished_.erase(Id(k));
      dirty = true;
    }
    std::string detail;
    const DnsObservation seen = world_->CheckDns(k, /*expect_revoked=*/true, &detail);
    const bool revoked = seen == DnsObservation::kRevoked;
    if (revoked) {
      k.dns_mismatch_since.reset();
      k.dns_problem.clear();
      republished_.erase(Id(k));
      wrong_passes_.erase(Id(k));
      Transition(k, KeyState::kRevoked, now);
    } else if (seen != DnsObservation::kTemporaryFailure && k.revoke_published) {
      // The hook succeeded but DNS serves the key or nothing: the revocation is not done.
      dirty |= NoteDns(k, seen == DnsObservation::kMatches ? DnsObservation::kWrong : seen, detail, now);
      dirty |= Republish(k, /*revoke=*/true, now);
    }
    if (!revoked && !dirty) continue;
    RETURN_IF_ERROR(Commit(std::move(next)));
    if (!revoked) continue;
    loaded_.erase(p.domain + "/" + selector);
    const KeyInfo& done = *Find(keys(), p.domain, selector);
    if (auto st = world_->DestroyKey(done); !st)
      world_->Log(LogLevel::kError, "revoked key " + selector + "._domainkey." + p.domain +
                                        " could not be destroyed: " + st.error().message);
  }
  return util::Ok();
}

util::Status RotationEngine::EmergencyRevoke(const std::string& domain, const std::string& selector) {
  const TimePoint now = world_->Now();
  std::vector<KeyInfo> next = keys();
  KeyInfo* k = Find(next, domain, selector);
  if (k == nullptr)
    return util::Err(util::ErrorCode::kNotFound, "no key " + selector + "._domainkey." + domain);
  if (k->state == KeyState::kRevoked)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     selector + "._domainkey." + domain + " is already revoked");
  const bool was_active = k->state == KeyState::kActive;
  k->emergency = true;
  if (k->state != KeyState::kRetiring) Transition(*k, KeyState::kRetiring, now);
  bool replaced = false;
  if (was_active) {
    KeyInfo* oldest_ready = nullptr;
    for (auto& other : next)
      if (other.domain == domain && other.algorithm == k->algorithm && other.state == KeyState::kReady &&
          (!oldest_ready || other.state_since < oldest_ready->state_since))
        oldest_ready = &other;
    if (oldest_ready) {
      Transition(*oldest_ready, KeyState::kActive, now);
      replaced = true;
    }
  }
  RETURN_IF_ERROR(Commit(std::move(next)));
  PublishSnapshot();
  bool any_active = false;
  for (const auto& other : keys())
    any_active |= other.domain == domain && other.state == KeyState::kActive;
  if (was_active && !replaced)
    world_->Log(any_active ? LogLevel::kWarning : LogLevel::kError,
                "emergency: " + selector + "._domainkey." + domain +
                    " no longer signs and no ready key could replace it" +
                    (any_active ? "" : "; the domain goes unsigned until a new key is verified"));
  return util::Ok();
}

util::Status RotationEngine::Import(KeyInfo key) {
  std::vector<KeyInfo> next = keys();
  if (Find(next, key.domain, key.selector) != nullptr)
    return util::Err(util::ErrorCode::kInvalidArgument, "selector " + key.selector + " of " + key.domain +
                                                            " exists already: selectors are never reused");
  key.state = KeyState::kPending;
  const std::string name = key.selector + "._domainkey." + key.domain;
  next.push_back(std::move(key));
  RETURN_IF_ERROR(Commit(std::move(next)));
  world_->Log(LogLevel::kInfo, "imported key " + name + " (pending: waiting for DNS)");
  return util::Ok();
}

void RotationEngine::PublishSnapshot() {
  std::map<std::string, std::vector<SigningSnapshot::KeyList>, std::less<>> by_domain;
  for (const auto& p : options_.streams) {
    SigningSnapshot::KeyList list;
    for (const auto& k : keys()) {
      if (!SameStream(k, p) || k.state != KeyState::kActive) continue;
      auto it = loaded_.find(k.domain + "/" + k.selector);
      if (it == loaded_.end()) {
        auto key = world_->LoadKey(k);
        if (!key) {
          world_->Log(LogLevel::kError, "active key " + k.selector + "._domainkey." + k.domain +
                                            " cannot be loaded: " + key.error().message);
          continue;
        }
        it = loaded_.emplace(k.domain + "/" + k.selector, *key).first;
      }
      auto signing = signer::SigningKey::Create({k.domain, k.selector, it->second, options_.canonicalization});
      if (!signing) {
        world_->Log(LogLevel::kError, signing.error().message);
        continue;
      }
      list.push_back(*signing);
    }
    by_domain[p.domain].push_back(std::move(list));
  }
  snapshots_->Store(std::make_shared<const SigningSnapshot>(std::move(by_domain), ++generation_,
                                                            &snapshots_->signature_counters()));
}

}  // namespace dkimrotor::keystore

namespace dkimrotor::keystore {

NextStep NextStepOf(const KeyInfo& key, const std::vector<KeyInfo>& all, const StreamPolicy& policy,
                    std::chrono::seconds min_propagation, bool has_hook, TimePoint now) {
  std::vector<const KeyInfo*> active;
  bool any_ready = false;
  for (const auto& k : all) {
    if (k.domain != policy.domain || k.algorithm != policy.algorithm) continue;
    if (k.state == KeyState::kActive) active.push_back(&k);
    any_ready |= k.state == KeyState::kReady;
  }
  std::optional<TimePoint> step;
  const KeyInfo* oldest = nullptr;
  for (const KeyInfo* k : active) {
    TimePoint t = k->activated.value_or(k->state_since);
    if (!oldest || t < oldest->activated.value_or(oldest->state_since)) oldest = k;
    if (!step || t > *step) step = t;
  }
  if (step && static_cast<int>(active.size()) >= policy.active_keys)
    *step += std::chrono::duration_cast<std::chrono::seconds>(policy.key_lifetime / policy.active_keys);
  else
    step.reset();
  const bool late = step && *step <= now && !any_ready;
  // Why DNS is not right yet, as the engine last saw it.
  const std::string dns = key.dns_problem.empty() ? "" : " (last DNS check: " + key.dns_problem + ")";
  switch (key.state) {
    case KeyState::kPending:
      if (key.dns_ok_since) return {"ready once DNS stays right", *key.dns_ok_since + min_propagation, false};
      if (!key.published && has_hook)
        return {"publishing through the hook" + (key.dns_problem.empty() ? "" : " (" + key.dns_problem + ")"),
                std::nullopt, false};
      if (!key.published) return {"waiting for its DNS record (see dkimrotor dns)" + dns, std::nullopt, false};
      return {"waiting for DNS to serve it" + dns, std::nullopt, false};
    case KeyState::kReady:
      return {"activates at the next rotation step", step, late};
    case KeyState::kActive:
      if (key.dns_mismatch_since)
        return {"signs, but DNS has not served its key since " + Rfc3339(*key.dns_mismatch_since) +
                    "; retires once another verified key can sign" + dns,
                std::nullopt, false};
      if (&key == oldest || (oldest && oldest->selector == key.selector))
        return {late ? "retires when a key is ready (rotation late)" : "retires", step, late};
      return {"signs", std::nullopt, false};
    case KeyState::kRetiring:
      if (!key.revoke_published && key.dns_problem.rfind("revoke hook failed", 0) == 0)
        return {"revocation: " + key.dns_problem, std::nullopt, false};
      if (key.emergency) return {"revocation (emergency)", now, false};
      return {"revocation", key.retired.value_or(key.state_since) + policy.grace, false};
    case KeyState::kRevoked:
      return {"none (revoked)", std::nullopt, false};
  }
  return {"", std::nullopt, false};
}

}  // namespace dkimrotor::keystore

#include "cli/wiring.h"

#include <algorithm>

#include "signer/header_selector.h"

namespace dkimrotor::cli {
keystore::TimePoint Now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(keystore::Clock::now());
}

util::Result<keystore::RotationOptions> RotationOptionsFrom(const conf::Config& config) {
  keystore::RotationOptions o;
  o.canonicalization = config.signing.canonicalization;
  o.min_propagation = config.dns.min_propagation;
  o.poll = config.dns.poll;
  for (const auto& d : config.domains) {
    for (const auto& algorithm : d.algorithms) {
      keystore::StreamPolicy p;
      p.domain = d.domain;
      p.stream = d.stream;
      p.algorithm = algorithm;
      p.bits = d.bits;
      p.active_keys = d.active_keys;
      p.key_lifetime = d.key_lifetime;
      p.prepublish = d.prepublish;
      p.grace = d.grace;
      p.selector_format = d.selector_format;
      if (d.delegation) p.slots = d.delegation->slots;
      o.streams.push_back(std::move(p));
    }
  }
  return o;
}

keystore::DnsCheckOptions DnsOptionsFrom(const conf::Config& config) {
  keystore::DnsCheckOptions o;
  o.resolvers = config.dns.resolvers;
  o.check_authoritative = config.dns.check_authoritative;
  o.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config.dns.timeout);
  o.authoritative_port = config.dns.authoritative_port;
  return o;
}

keystore::KeystoreWorldOptions WorldOptionsFrom(const conf::Config& config) {
  keystore::KeystoreWorldOptions o;
  o.directory = config.keystore.directory;
  o.dns = DnsOptionsFrom(config);
  for (const auto& d : config.domains)
    if (!d.publish_hook.empty())
      o.hooks[d.domain] = keystore::HookConfig{
          d.publish_hook, std::chrono::duration_cast<std::chrono::milliseconds>(d.hook_timeout)};
  for (const auto& d : config.domains)
    if (d.delegation) o.delegations[d.domain] = d.delegation->zone;
  return o;
}

util::Result<std::shared_ptr<const session::Settings>> SessionSettingsFrom(const conf::Config& config) {
  auto s = std::make_shared<session::Settings>();
  ASSIGN_OR_RETURN(s->policy, session::SigningPolicy::Create(config.signing.internal_hosts,
                                                             config.signing.sign_authenticated));
  s->headers = signer::HeaderSelector(signer::HeaderPolicy{config.signing.headers, config.signing.oversign});
  for (const auto& d : config.domains) s->domains.push_back({d.domain, d.subdomains});
  s->on_error = config.milter.on_error == conf::OnError::kAccept ? session::OnError::kAccept
                                                                 : session::OnError::kTempfail;
  switch (config.milter.on_bad_message) {
    case conf::OnBadMessage::kAccept: s->on_bad_message = session::OnBadMessage::kAccept; break;
    case conf::OnBadMessage::kReject: s->on_bad_message = session::OnBadMessage::kReject; break;
    case conf::OnBadMessage::kTempfail: s->on_bad_message = session::OnBadMessage::kTempfail; break;
  }
  if (config.signing.signature_lifetime.count() > 0) s->signature_lifetime = config.signing.signature_lifetime.count();
  s->max_header_fields = static_cast<size_t>(config.signing.max_header_fields);
  s->max_header_bytes = static_cast<size_t>(config.signing.max_header_bytes);
  return std::shared_ptr<const session::Settings>(std::move(s));
}

util::Result<daemon::DaemonSettings> DaemonSettingsFrom(const conf::Config& config) {
  daemon::DaemonSettings s;
  s.socket = config.milter.socket;
  s.socket_mode = config.milter.socket_mode;
  s.user = config.milter.user;
  s.group = config.milter.group;
  s.stop_timeout = config.milter.stop_timeout;
  s.metrics_listen = config.metrics.listen;
  ASSIGN_OR_RETURN(s.session, SessionSettingsFrom(config));
  ASSIGN_OR_RETURN(s.rotation, RotationOptionsFrom(config));
  s.world = WorldOptionsFrom(config);
  s.poll = std::chrono::duration_cast<std::chrono::milliseconds>(config.dns.poll);
  for (const auto& d : config.domains) s.domains.push_back(d.domain);
  return s;
}

}  // namespace dkimrotor::cli

#include "cli/wiring.h"

namespace dkimrotor::cli {

util::Result<keystore::RotationOptions> RotationOptionsFrom(const conf::Config& config) {
  keystore::RotationOptions o;
  o.canonicalization = config.signing.canonicalization;
  o.min_propagation = config.dns.min_propagation;
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
  // A resolver on a port other than 53 is a lab or test setup whose authoritative servers
  // listen on that port too (README: "DNS checks").
  for (const auto& r : config.dns.resolvers)
    if (r.port != 53) o.authoritative_port = r.port;
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
  return o;
}

}  // namespace dkimrotor::cli

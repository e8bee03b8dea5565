#include "migrate/config_writer.h"

#include <algorithm>

#include "util/file.h"

namespace dkimrotor::migrate {

std::string LibconfigString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string LibconfigList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + LibconfigString(items[i]);
  return out + "]";
}

std::string RenderConfig(const MigrationPlan& plan, const RenderOptions& options) {
  std::string o;
  o += "# dkimrotor configuration migrated from " + plan.source + " by `dkimrotor migrate`.\n";
  o += "# A setting not written here takes its default (contrib/dkimrotor.conf.example).\n";
  o += "# Check it with: dkimrotor check -c THIS_FILE\n\n";

  o += "milter:\n{\n";
  if (plan.socket) o += "  socket = " + LibconfigString(*plan.socket) + ";\n";
  if (plan.user) o += "  user = " + LibconfigString(*plan.user) + ";\n";
  if (plan.group) o += "  group = " + LibconfigString(*plan.group) + ";\n";
  if (plan.socket_mode) o += "  socket_mode = " + LibconfigString(util::ModeText(*plan.socket_mode)) + ";  # from UMask\n";
  if (plan.on_error) o += "  on_error = " + LibconfigString(*plan.on_error) + ";\n";
  o += "};\n\n";

  o += "signing:\n{\n";
  if (plan.internal_hosts) {
    o += "  internal_hosts = " + LibconfigList(*plan.internal_hosts) + ";\n";
  } else {
    o += "  # InternalHosts was not set: OpenDKIM signed mail from 127.0.0.1.\n";
    o += "  internal_hosts = [\"127.0.0.1/32\", \"::1/128\"];\n";
  }
  if (plan.canonicalization) o += "  canonicalization = " + LibconfigString(*plan.canonicalization) + ";\n";
  if (plan.headers) o += "  headers = " + LibconfigList(*plan.headers) + ";\n";
  if (plan.oversign) o += "  oversign = " + LibconfigList(*plan.oversign) + ";\n";
  if (plan.signature_lifetime) o += "  signature_lifetime = \"" + std::to_string(*plan.signature_lifetime) + "s\";\n";
  o += "};\n\n";

  o += "keystore:\n{\n  directory = " + LibconfigString(options.keystore_directory) + ";\n};\n\n";

  o += "dns:\n{\n";
  if (plan.resolvers) o += "  resolvers = " + LibconfigList(*plan.resolvers) + ";\n";
  if (plan.dns_timeout) o += "  timeout = \"" + std::to_string(*plan.dns_timeout) + "s\";\n";
  o += "};\n\n";

  if (plan.syslog) o += "log:\n{\n  target = \"syslog\";\n};\n\n";

  o += "# OpenDKIM's keys are imported as pending: each signs once DNS serves its record (it does\n";
  o += "# already) for dns.min_propagation. There is no publish_hook: the new keys dkimrotor makes\n";
  o += "# wait until you publish the records `dkimrotor dns -c THIS_FILE` prints, or set one.\n";
  o += "domains = (";
  for (size_t i = 0; i < plan.domains.size(); ++i) {
    const DomainPlan& d = plan.domains[i];
    o += i ? ",\n" : "\n";
    o += "  {\n    domain = " + LibconfigString(d.domain) + ";\n";
    o += "    stream = " + LibconfigString(options.stream) + ";\n";
    std::vector<std::string> algorithms;
    // Each once, RSA first (kAlgorithms' order): receivers that know one algorithm know RSA.
    if (auto it = options.algorithms.find(d.domain); it != options.algorithms.end())
      for (signer::Algorithm a : signer::kAlgorithms)
        if (std::find(it->second.begin(), it->second.end(), a) != it->second.end())
          algorithms.emplace_back(signer::AlgorithmName(a));
    if (algorithms.empty()) algorithms.emplace_back(signer::AlgorithmName(signer::Algorithm::kRsaSha256));
    o += "    algorithms = " + LibconfigList(algorithms) + ";\n";
    o += std::string("    subdomains = ") + (d.subdomains ? "true" : "false") + ";\n";
    if (!d.keys.empty()) {
      o += "    # from OpenDKIM:";
      for (const auto& k : d.keys) o += " " + k.selector;
      o += "\n";
    }
    o += "  }";
  }
  o += plan.domains.empty() ? ");\n" : "\n);\n";
  return o;
}

}  // namespace dkimrotor::migrate

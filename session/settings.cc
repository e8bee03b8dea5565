#include "session/settings.h"

#include "signer/from_domain.h"

namespace dkimrotor::session {

const Settings::Domain* Settings::Match(std::string_view from_domain) const {
  const Domain* match = nullptr;
  for (const auto& d : domains)
    if (signer::DomainMatches(from_domain, d.name, d.subdomains) &&
        (!match || d.name.size() > match->name.size()))
      match = &d;
  return match;
}

}  // namespace dkimrotor::session

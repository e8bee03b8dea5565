// Extracts the domain of the RFC 5322 From address, which decides the signing domain.
// Handles display names, quoted strings, comments and angle brackets; refuses a From with no
// address or with several (the caller decides what to do with such a message).
// Stateless; safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "util/result.h"

namespace dkimrotor::signer {

// `value` is the From field's value (after the colon, folds allowed). Returns the domain,
// lowercased, without a trailing dot.
util::Result<std::string> FromDomain(std::string_view value);

// Whether `domain` is `configured` or, when `subdomains`, a subdomain of it (label-wise:
// "mail.example.com" is under "example.com"; "badexample.com" is not).
bool DomainMatches(std::string_view domain, std::string_view configured, bool subdomains);

}  // namespace dkimrotor::signer

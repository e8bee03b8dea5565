// Syntax checks for the values of single settings, used by the loader. Each error message says
// what is wrong and the fix, and reads well after the loader's "FILE:LINE: PATH = VALUE: ".
// Values with a type of their own are parsed by that type instead (util::Cidr,
// util::ServerAddress, signer::SelectorFormat, signer::ParseAlgorithm, ...).
// Stateless; safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace dkimrotor::conf::internal {

// libmilter's socket syntax: inet:PORT[@HOST], inet6:PORT[@HOST], unix:/path, local:/path.
// HOST is an address of the right family (bracketed or not) or a host name.
util::Status CheckMilterSocket(std::string_view spec);

// A fully qualified domain name of LDH labels; returns it lowercase.
util::Result<std::string> NormalizeDomainName(std::string_view text);

// Letters, digits, '-' and '.', as it becomes part of a selector.
util::Status CheckStream(std::string_view stream);

// A selector as DNS needs it: dot-separated labels of 1..63 characters that neither start nor
// end with '-', and with "._domainkey.DOMAIN" no longer than 253 characters.
util::Status CheckSelector(std::string_view selector, std::string_view domain);

// An octal permission string such as "0660" or "660", at most 0777.
util::Result<unsigned> ParseSocketMode(std::string_view text);

// A header field name to sign, with an optional trailing '*' for a prefix; returns it lowercase.
util::Result<std::string> NormalizeHeaderName(std::string_view text);

util::Status CheckAbsolutePath(std::string_view path);

// A user or group name (letters, digits, '.', '_', '-', not starting with '-') or a number.
util::Status CheckAccountName(std::string_view name);

// The candidate `word` is a likely typo of: one that starts with it or that it starts with,
// else the nearest by edit distance (a transposition counts as one edit) if near enough; empty
// when none is.
std::string_view ClosestMatch(std::string_view word,
                              const std::vector<std::string_view>& candidates);

}  // namespace dkimrotor::conf::internal

// Parses a raw DNS response (RFC 1035 4.1) into the few record types the DNS checker reads:
// TXT, CNAME, NS, SOA, A and AAAA. c-ares 1.18's ares_parse_*_reply functions drop the RCODE,
// the AA flag and the owner names needed to follow CNAME chains, so this reads the message
// itself, using ares_expand_name for compressed names.
// Plain values; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace dkimrotor::keystore::internal {

struct ResourceRecord {
  std::string name;  // lower case, no trailing dot
  uint16_t type = 0;
  uint32_t ttl = 0;
  std::vector<std::string> strings;  // TXT: the character-strings, in order
  std::string target;                // CNAME/NS: the target; SOA: the owner's MNAME
  std::string address;               // A/AAAA: the address as text
};

struct DnsResponse {
  int rcode = 0;
  bool authoritative = false;  // the AA flag
  bool truncated = false;
  std::vector<ResourceRecord> answers;
  std::vector<ResourceRecord> authority;
  std::vector<ResourceRecord> additional;
};

util::Result<DnsResponse> ParseDnsResponse(std::string_view message);

// Lower case without the trailing dot: the form ResourceRecord::name uses.
std::string NormalizeName(std::string_view name);

// What the answer section says about `qname` of `type`, following CNAMEs in the answer
// section from `qname` (a recursive resolver returns the whole chain; an authoritative server
// stops at its zone's edge).
struct AnswerChain {
  std::vector<std::string> cnames;             // the CNAME targets followed, in order
  std::string final_name;                      // qname, or the last CNAME target
  std::vector<const ResourceRecord*> records;  // records of `type` owned by final_name
  bool loop = false;                           // the chain came back to a name already seen
};
AnswerChain FollowAnswer(const DnsResponse& response, std::string_view qname, uint16_t type);

}  // namespace dkimrotor::keystore::internal

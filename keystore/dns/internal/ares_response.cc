#include "keystore/dns/internal/ares_response.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>

#include <algorithm>

namespace dkimrotor::keystore::internal {
namespace {

util::Unexpected Bad(std::string why) {
  return util::Err(util::ErrorCode::kDns, "malformed DNS response: " + why);
}

class Reader {
 public:
  explicit Reader(std::string_view message)
      : data_(reinterpret_cast<const unsigned char*>(message.data())),
        size_(static_cast<int>(message.size())) {}

  int offset() const { return offset_; }
  void Seek(int offset) { offset_ = offset; }
  bool Has(int n) const { return n >= 0 && offset_ + n <= size_; }

  util::Result<uint16_t> U16() {
    if (!Has(2)) return Bad("truncated 16-bit field");
    uint16_t v = static_cast<uint16_t>((data_[offset_] << 8) | data_[offset_ + 1]);
    offset_ += 2;
    return v;
  }
  util::Result<uint32_t> U32() {
    ASSIGN_OR_RETURN(uint32_t hi, U16());
    ASSIGN_OR_RETURN(uint32_t lo, U16());
    return (hi << 16) | lo;
  }
  util::Result<std::string> Name() {
    char* name = nullptr;
    long consumed = 0;
    if (offset_ >= size_) return Bad("truncated name");
    int status = ares_expand_name(data_ + offset_, data_, size_, &name, &consumed);
    if (status != ARES_SUCCESS) return Bad(std::string("bad name: ") + ares_strerror(status));
    std::string out(name);
    ares_free_string(name);
    offset_ += static_cast<int>(consumed);
    return NormalizeName(out);
  }
  std::string_view Bytes(int n) {
    std::string_view out(reinterpret_cast<const char*>(data_ + offset_), static_cast<size_t>(n));
    offset_ += n;
    return out;
  }

 private:
  const unsigned char* data_;
  int size_;
  int offset_ = 0;
};

util::Result<ResourceRecord> ReadRecord(Reader& r) {
  ResourceRecord rr;
  ASSIGN_OR_RETURN(rr.name, r.Name());
  ASSIGN_OR_RETURN(rr.type, r.U16());
  ASSIGN_OR_RETURN(uint16_t klass, r.U16());
  (void)klass;
  ASSIGN_OR_RETURN(rr.ttl, r.U32());
  ASSIGN_OR_RETURN(uint16_t rdlength, r.U16());
  if (!r.Has(rdlength)) return Bad("RDATA runs past the end of the message");
  int end = r.offset() + rdlength;
  switch (rr.type) {
    case ns_t_txt:
      while (r.offset() < end) {
        std::string_view len_byte = r.Bytes(1);
        int len = static_cast<unsigned char>(len_byte[0]);
        if (r.offset() + len > end) return Bad("TXT string runs past its RDATA");
        rr.strings.emplace_back(r.Bytes(len));
      }
      break;
    case ns_t_cname:
    case ns_t_ns:
    case ns_t_soa: {
      ASSIGN_OR_RETURN(rr.target, r.Name());
      if (rr.type != ns_t_soa && r.offset() != end) return Bad("name RDATA has trailing bytes");
      break;
    }
    case ns_t_a:
    case ns_t_aaaa: {
      int family = rr.type == ns_t_a ? AF_INET : AF_INET6;
      int want = rr.type == ns_t_a ? 4 : 16;
      if (rdlength != want) return Bad("address RDATA of the wrong size");
      char text[INET6_ADDRSTRLEN] = {};
      std::string_view raw = r.Bytes(want);
      inet_ntop(family, raw.data(), text, sizeof(text));
      rr.address = text;
      break;
    }
    default: break;
  }
  if (r.offset() > end) return Bad("record runs past its RDATA");
  r.Seek(end);
  return rr;
}

}  // namespace

std::string NormalizeName(std::string_view name) {
  std::string out(name);
  while (!out.empty() && out.back() == '.') out.pop_back();
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return out;
}

util::Result<DnsResponse> ParseDnsResponse(std::string_view message) {
  Reader r(message);
  DnsResponse out;
  ASSIGN_OR_RETURN(uint16_t id, r.U16());
  (void)id;
  ASSIGN_OR_RETURN(uint16_t flags, r.U16());
  out.authoritative = (flags & 0x0400) != 0;
  out.truncated = (flags & 0x0200) != 0;
  out.rcode = flags & 0x000f;
  ASSIGN_OR_RETURN(uint16_t qdcount, r.U16());
  ASSIGN_OR_RETURN(uint16_t ancount, r.U16());
  ASSIGN_OR_RETURN(uint16_t nscount, r.U16());
  ASSIGN_OR_RETURN(uint16_t arcount, r.U16());
  for (int i = 0; i < qdcount; ++i) {
    ASSIGN_OR_RETURN(std::string qname, r.Name());
    (void)qname;
    if (!r.Has(4)) return Bad("truncated question");
    r.Bytes(4);
  }
  for (auto [count, section] :
       {std::pair{ancount, &out.answers}, std::pair{nscount, &out.authority},
        std::pair{arcount, &out.additional}}) {
    for (int i = 0; i < count; ++i) {
      ASSIGN_OR_RETURN(ResourceRecord rr, ReadRecord(r));
      section->push_back(std::move(rr));
    }
  }
  return out;
}

AnswerChain FollowAnswer(const DnsResponse& response, std::string_view qname, uint16_t type) {
  AnswerChain chain;
  chain.final_name = NormalizeName(qname);
  std::vector<std::string> seen{chain.final_name};
  while (true) {
    const ResourceRecord* cname = nullptr;
    for (const auto& rr : response.answers)
      if (rr.type == ns_t_cname && rr.name == chain.final_name) cname = &rr;
    if (cname == nullptr || type == ns_t_cname) break;
    if (std::find(seen.begin(), seen.end(), cname->target) != seen.end()) {
      chain.loop = true;
      break;
    }
    chain.cnames.push_back(cname->target);
    seen.push_back(cname->target);
    chain.final_name = cname->target;
  }
  for (const auto& rr : response.answers)
    if (rr.type == type && rr.name == chain.final_name) chain.records.push_back(&rr);
  return chain;
}

}  // namespace dkimrotor::keystore::internal

#include "keystore/signing_snapshot.h"

#include "signer/algorithm.h"

namespace dkimrotor::keystore {

SigningSnapshot::SigningSnapshot(std::map<std::string, std::vector<KeyList>, std::less<>> keys,
                                 uint64_t generation, util::CounterFamily* signatures)
    : generation_(generation) {
  for (auto& [domain, lists] : keys) {
    if (signatures)
      for (const KeyList& list : lists)
        for (const auto& key : list)
          counters_.emplace(key.get(), signatures->Get({key->domain(), key->selector(),
                                                        std::string(signer::AlgorithmName(key->algorithm()))}));
    auto entry = std::make_unique<DomainKeys>();
    entry->by_algorithm = std::move(lists);
    domains_.emplace(domain, std::move(entry));
  }
}

SigningSnapshot::KeyList SigningSnapshot::Pick(std::string_view domain) const {
  KeyList out;
  auto it = domains_.find(domain);
  if (it == domains_.end()) return out;
  const DomainKeys& d = *it->second;
  const uint64_t turn = d.next.fetch_add(1, std::memory_order_relaxed);
  for (const KeyList& list : d.by_algorithm)
    if (!list.empty()) out.push_back(list[turn % list.size()]);
  return out;
}

std::vector<std::string> SigningSnapshot::Domains() const {
  std::vector<std::string> out;
  for (const auto& [domain, _] : domains_) out.push_back(domain);
  return out;
}

}  // namespace dkimrotor::keystore

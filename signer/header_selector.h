// Chooses which header fields a signature covers (the h= list) and collects them in the order
// RFC 6376 5.4.2 prescribes: for each name in h=, the last not yet used instance, bottom-up.
// Immutable after construction; safe to share between threads.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "signer/header_field.h"

namespace dkimrotor::signer {

struct HeaderPolicy {
  // Names to sign wherever they occur, lowercase; a trailing '*' matches a prefix ("list-*").
  std::vector<std::string> sign;
  // Names listed once more than they occur, so nobody can add another instance later.
  std::vector<std::string> oversign;

  static HeaderPolicy Default();
};

class HeaderSelector {
 public:
  explicit HeaderSelector(HeaderPolicy policy);

  // The h= names for this message, lowercase, in signing order. "from" is always included.
  // A name with an instance that CheckField() finds not plain is left out, oversigning too.
  std::vector<std::string> SelectNames(const std::vector<HeaderField>& fields) const;

  const HeaderPolicy& policy() const { return policy_; }

 private:
  bool Matches(std::string_view key) const;
  HeaderPolicy policy_;
};

// The fields h= designates, bottom-up per name; a name with no instance left selects nothing
// (a null string, RFC 6376 5.4). Pointers into `fields`.
std::vector<const HeaderField*> CollectSignedFields(const std::vector<HeaderField>& fields,
                                                    const std::vector<std::string>& names);

}  // namespace dkimrotor::signer

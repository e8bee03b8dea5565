#include "keystore/dns/key_record.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "signer/public_key.h"
#include "signer/tag_list.h"
#include "util/base64.h"
#include "util/openssl_ptr.h"

namespace dkimrotor::keystore {
namespace {

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (Lower(a[i]) != Lower(b[i])) return false;
  return true;
}

// A colon-separated tag value (h=, s=, t=) with folding white space removed.
std::vector<std::string> SplitColons(std::string_view value) {
  std::string stripped = signer::StripFws(value);
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t colon = stripped.find(':', start);
    out.push_back(stripped.substr(start, colon == std::string::npos ? colon : colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return out;
}

bool Contains(const std::vector<std::string>& list, std::string_view item) {
  for (const auto& s : list)
    if (EqualsIgnoreCase(s, item)) return true;
  return false;
}

// signer::PublicKey refuses RSA keys below 1024 bits without saying their size; this reads it
// so the verdict can name it. 0 when the bytes are no RSA key at all.
int RsaBits(const std::string& der) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* p = bytes;
  util::EvpPkeyPtr pkey(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!pkey) {
    p = bytes;
    pkey.reset(d2i_PublicKey(EVP_PKEY_RSA, nullptr, &p, static_cast<long>(der.size())));
  }
  if (!pkey || EVP_PKEY_get_base_id(pkey.get()) != EVP_PKEY_RSA) return 0;
  return EVP_PKEY_get_bits(pkey.get());
}

KeyRecordCheck Verdict(KeyRecordVerdict verdict, std::string detail, KeyRecordCheck base = {}) {
  base.verdict = verdict;
  base.detail = std::move(detail);
  base.as_expected = false;
  return base;
}

}  // namespace

std::string_view KeyRecordVerdictName(KeyRecordVerdict v) {
  switch (v) {
    case KeyRecordVerdict::kMatches: return "matches";
    case KeyRecordVerdict::kRevoked: return "revoked";
    case KeyRecordVerdict::kWrongKey: return "wrong key";
    case KeyRecordVerdict::kMalformed: return "malformed";
    case KeyRecordVerdict::kKeyTooShort: return "key too short";
  }
  return "unknown";
}

KeyRecordCheck CheckKeyRecord(std::string_view txt_joined, signer::Algorithm expected,
                              std::string_view expected_p_base64) {
  using V = KeyRecordVerdict;
  constexpr char kRepublish[] = ": republish the record with the value dkimrotor gives the hook";
  auto tags = signer::TagList::Parse(txt_joined);
  if (!tags)
    return Verdict(V::kMalformed, "the key record is not a valid tag list (" +
                                      tags.error().message + ")" + kRepublish);
  auto get = [&](std::string_view name) { return tags->Get(name); };

  if (auto v = get("v")) {
    if (tags->tags().front().first != "v")
      return Verdict(V::kMalformed, std::string("v= is not the first tag, so verifiers must "
                                                "ignore the record") +
                                        kRepublish);
    if (signer::StripFws(*v) != "DKIM1")
      return Verdict(V::kMalformed, "v=" + std::string(*v) + " is not DKIM1" + kRepublish);
  }

  // An empty p= revokes the key whatever k= says (RFC 6376 3.6.1). dkimrotor's own revocation
  // record, "v=DKIM1; p=", has no k=, which would otherwise read as k=rsa and make every
  // revoked Ed25519 key "wrong" in DNS for ever (its revoke hook run again at every poll).
  if (auto p = get("p"); p && signer::StripFws(*p).empty()) {
    KeyRecordCheck check;
    check.verdict = V::kRevoked;
    check.as_expected = expected_p_base64.find_first_not_of(" \t\r\n") == std::string_view::npos;
    if (!check.as_expected)
      check.detail = std::string("p= is empty: the key is revoked in DNS while dkimrotor still "
                                 "expects it published") + kRepublish;
    return check;
  }

  std::string_view want_k = signer::KeyTypeName(expected);
  std::string k = get("k") ? signer::StripFws(*get("k")) : std::string("rsa");
  if (!EqualsIgnoreCase(k, want_k))
    return Verdict(V::kWrongKey, "k=" + k + " but the key is " + std::string(want_k) +
                                     (get("k") ? "" : " (a record without k= means rsa)") +
                                     kRepublish);

  if (auto h = get("h"); h && !Contains(SplitColons(*h), "sha256"))
    return Verdict(V::kMalformed, "h=" + std::string(*h) +
                                      " does not allow sha256, so verifiers reject our "
                                      "signatures: remove h= or add sha256 to it");

  if (auto s = get("s");
      s && !Contains(SplitColons(*s), "email") && !Contains(SplitColons(*s), "*"))
    return Verdict(V::kMalformed, "s=" + std::string(*s) +
                                      " does not include email or *, so the key does not apply "
                                      "to mail: remove s= or set s=email");

  KeyRecordCheck check;
  if (auto t = get("t"); t && Contains(SplitColons(*t), "y"))
    check.warnings.push_back(
        "t=y: testing mode left on (verifiers may treat failures as passes): remove t=y");

  auto p = get("p");
  if (!p) return Verdict(V::kMalformed, std::string("the record has no p= tag") + kRepublish);
  auto der = util::Base64Decode(*p);
  if (!der)
    return Verdict(V::kMalformed,
                   "p= is not valid base64 (" + der.error().message + ")" + kRepublish,
                   std::move(check));

  auto key = signer::PublicKey::FromDkim(expected, *p);
  if (key) {
    check.key_bits = (*key)->bits();
    // RFC 8301 lets verifiers accept 1024 bits but asks signers for 2048: such a key works
    // today, so this is advice, not a failure.
    if (expected == signer::Algorithm::kRsaSha256 && check.key_bits < kRecommendedRsaBits)
      check.warnings.push_back("p= is an RSA key of " + std::to_string(check.key_bits) +
                               " bits, below the 2048 RFC 8301 asks signers for (receivers "
                               "treat such keys with suspicion): set bits = 2048 and rotate");
  } else {
    int bits = expected == signer::Algorithm::kRsaSha256 ? RsaBits(*der) : 0;
    if (bits > 0 && bits < signer::kMinRsaBits) {
      check.key_bits = bits;
      return Verdict(V::kKeyTooShort,
                     "p= is an RSA key of " + std::to_string(bits) +
                         " bits, below RFC 8301's 1024, so verifiers reject "
                         "it: rotate to a key of 2048 bits",
                     std::move(check));
    }
    return Verdict(V::kMalformed,
                   "p= is not a usable key (" + key.error().message + ")" + kRepublish,
                   std::move(check));
  }

  if (expected_p_base64.find_first_not_of(" \t\r\n") == std::string_view::npos)
    return Verdict(V::kWrongKey,
                   "the record still publishes a key where dkimrotor expects the "
                   "revocation \"v=DKIM1; p=\": republish the revocation",
                   std::move(check));
  auto want = util::Base64Decode(expected_p_base64);
  if (!want)
    return Verdict(V::kMalformed,
                   "the expected key is not valid base64 (" + want.error().message +
                       "): this is a dkimrotor bug",
                   std::move(check));
  if (*der != *want)
    return Verdict(V::kWrongKey,
                   "p= holds a different key than the one dkimrotor published "
                   "(a stale record, a failed hook, or another writer of this "
                   "name)" +
                       std::string(kRepublish),
                   std::move(check));
  check.verdict = V::kMatches;
  check.as_expected = true;
  return check;
}

std::vector<std::string> SplitTxtStrings(std::string_view value) {
  std::vector<std::string> out;
  do {
    out.emplace_back(value.substr(0, kMaxTxtStringBytes));
    value.remove_prefix(out.back().size());
  } while (!value.empty());
  return out;
}

}  // namespace dkimrotor::keystore

// Throughput of the signer's hot path next to the cheapest raw OpenSSL way to do the same work,
// so a regression shows as a ratio, not as an absolute number that depends on the machine.
// scripts/bench runs this and compares it with `openssl speed`.
//
// Cases (each reports bytes/s or items/s):
//   BM_BodyHash/<canon>/<size>/chunk:<n>   BodyHasher over a mail-like body fed in n-byte chunks
//   BM_RawSha256/<size>/chunk:<n>          EVP_DigestUpdate over the same bytes: the ceiling
//   BM_Sign/<alg>                          PrivateKey::Sign of one digest (items = signatures)
//   BM_RawOpenSslSign/<alg>                the cheapest raw OpenSSL signature: the baseline
//   BM_SignThreaded/<alg>, BM_RawOpenSslSignThreaded/<alg>  the same on 1 and 2 threads
//   BM_SignMessage/<keys>/<size>           a whole 10-header message (items = messages)
//   BM_CpuControl                          a pure ALU loop on 1 and 2 threads: how much
//                                          parallelism the machine gave this run at all
#include <benchmark/benchmark.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "signer/body_hasher.h"
#include "signer/header_selector.h"
#include "signer/internal/sha256.h"
#include "signer/message_signer.h"
#include "signer/private_key.h"
#include "signer/signing_key.h"
#include "util/openssl_ptr.h"

namespace dkimrotor::signer {
namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * kKiB;
// libmilter hands the body over in pieces of at most MILTER_CHUNK_SIZE (65535) bytes.
constexpr size_t kMilterChunk = 65535;
constexpr int64_t kTimestamp = 1700000000;

[[noreturn]] void SetupFailed(std::string_view what) {
  std::fprintf(stderr, "signer_bench: setup failed: %.*s\n", static_cast<int>(what.size()),
               what.data());
  std::exit(1);
}

// xorshift64*: the same body on every machine and library version, unlike std:: distributions.
class Rng {
 public:
  uint64_t Next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1DULL;
  }
  // Roughly uniform in [0, n); the bias is irrelevant here.
  size_t Below(size_t n) { return static_cast<size_t>(Next() >> 33) % n; }

 private:
  uint64_t state_ = 0x9E3779B97F4A7C15ULL;
};

// A plain-text mail body: lines of about 70 characters of words separated by single spaces,
// CRLF line ends, paragraphs split by empty lines, and the irregular white space relaxed
// canonicalization exists for (double spaces, tabs, a trailing space before CRLF) now and then.
// Exactly `size` bytes, ending in CRLF.
std::string MakeMailBody(size_t size) {
  static constexpr std::array<std::string_view, 48> kWords = {
      "the",      "of",       "and",     "to",        "a",          "in",       "for",
      "is",       "on",       "that",    "by",        "this",       "with",     "you",
      "it",       "not",      "or",      "be",        "are",        "from",     "at",
      "as",       "your",     "all",     "have",      "new",        "more",     "an",
      "was",      "we",       "will",    "meeting",   "quarterly",  "report",   "attached",
      "please",   "review",   "before",  "Thursday,", "deadline.",  "thanks",   "regards,",
      "schedule", "customer", "invoice", "delivery",  "confirmed.", "question"};
  Rng rng;
  std::string body;
  body.reserve(size + 128);
  int lines_in_paragraph = 0;
  while (body.size() < size) {
    const size_t target = 62 + rng.Below(15);  // 62..76 columns
    size_t line_start = body.size();
    while (true) {
      body += kWords[rng.Below(kWords.size())];
      if (body.size() - line_start >= target) break;
      const size_t gap = rng.Below(100);
      if (gap < 2) {
        body += "  ";
      } else if (gap < 3) {
        body += '\t';
      } else {
        body += ' ';
      }
    }
    if (rng.Below(50) == 0) body += ' ';
    body += "\r\n";
    if (++lines_in_paragraph >= 4 && rng.Below(4) == 0) {
      body += "\r\n";
      lines_in_paragraph = 0;
    }
  }
  body.resize(size);
  body[size - 2] = '\r';
  body[size - 1] = '\n';
  return body;
}

// A MIME attachment as mail carries it: base64 in 76-character lines with CRLF (RFC 2045),
// the bulk of every large message. Exactly `size` bytes, ending in CRLF.
std::string MakeAttachmentBody(size_t size) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  Rng rng;
  std::string body;
  body.reserve(size + 80);
  while (body.size() < size) {
    for (int i = 0; i < 76; ++i) body += kAlphabet[rng.Below(64)];
    body += "\r\n";
  }
  body.resize(size);
  body[size - 2] = '\r';
  body[size - 1] = '\n';
  return body;
}

const std::string& AttachmentBody(size_t size) {
  static std::map<size_t, std::string> bodies;  // filled while registering, as MailBody's
  auto it = bodies.find(size);
  if (it == bodies.end()) it = bodies.emplace(size, MakeAttachmentBody(size)).first;
  return it->second;
}

const std::string& MailBody(size_t size) {
  // Filled while registering, before any benchmark thread runs; read-only afterwards.
  static std::map<size_t, std::string> bodies;
  auto it = bodies.find(size);
  if (it == bodies.end()) it = bodies.emplace(size, MakeMailBody(size)).first;
  return it->second;
}

template <class Fn>
void FeedInChunks(std::string_view data, size_t chunk, Fn&& fn) {
  for (size_t off = 0; off < data.size(); off += chunk) fn(data.substr(off, chunk));
}

std::string SizeName(size_t size) {
  if (size % kMiB == 0) return std::to_string(size / kMiB) + "MiB";
  if (size % kKiB == 0) return std::to_string(size / kKiB) + "KiB";
  return std::to_string(size) + "B";
}

internal::Sha256Digest SomeDigest() { return internal::Sha256("dkimrotor benchmark digest"); }

// The same key material as PrivateKey holds, loaded again as a bare EVP_PKEY for the raw cases.
util::EvpPkeyPtr RawKey(const PrivateKey& key) {
  auto pem = key.ToPem();
  if (!pem) SetupFailed(pem.error().message);
  util::BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  util::EvpPkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!pkey) SetupFailed("reloading the key PEM");
  return pkey;
}

struct BenchKey {
  std::string name;  // "rsa2048", "ed25519"
  std::shared_ptr<const PrivateKey> key;
  util::EvpPkeyPtr raw;
  std::shared_ptr<const SigningKey> signing;
};

BenchKey MakeBenchKey(std::string name, std::shared_ptr<const PrivateKey> key) {
  BenchKey k;
  k.name = std::move(name);
  k.raw = RawKey(*key);
  auto signing = SigningKey::Create(
      SigningKeyOptions{"example.com", "bench-" + k.name, key, Canonicalization{}});
  if (!signing) SetupFailed(signing.error().message);
  k.signing = std::move(signing).value();
  k.key = std::move(key);
  return k;
}

const BenchKey& RsaKey() {
  static const BenchKey k = [] {
    auto key = PrivateKey::Generate(Algorithm::kRsaSha256, 2048);
    if (!key) SetupFailed(key.error().message);
    return MakeBenchKey("rsa2048", std::move(key).value());
  }();
  return k;
}

const BenchKey& Ed25519Key() {
  static const BenchKey k = [] {
    std::string seed(32, '\0');
    for (size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<char>(i * 7 + 1);
    auto key = PrivateKey::FromEd25519Seed(seed);
    if (!key) SetupFailed(key.error().message);
    return MakeBenchKey("ed25519", std::move(key).value());
  }();
  return k;
}

// Construction and Finish() are inside the loop: a milter pays them once per message.
void BM_BodyHash(benchmark::State& state, Canon canon, const std::string* body_ptr, size_t chunk) {
  const std::string& body = *body_ptr;
  const size_t size = body.size();
  for (auto _ : state) {
    BodyHasher hasher(canon);
    FeedInChunks(body, chunk, [&](std::string_view c) { hasher.Update(c); });
    benchmark::DoNotOptimize(hasher.Finish());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(size));
}

// The ceiling for BM_BodyHash: SHA-256 of the raw bytes, one context reused, no canonicalization.
void BM_RawSha256(benchmark::State& state, size_t size, size_t chunk) {
  const std::string& body = MailBody(size);
  util::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) SetupFailed("EVP_MD_CTX_new");
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  for (auto _ : state) {
    unsigned int len = 0;
    bool ok = EVP_DigestInit_ex2(ctx.get(), internal::Sha256Md(), nullptr) == 1;
    FeedInChunks(body, chunk, [&](std::string_view c) {
      ok &= EVP_DigestUpdate(ctx.get(), c.data(), c.size()) == 1;
    });
    ok &= EVP_DigestFinal_ex(ctx.get(), out.data(), &len) == 1;
    if (!ok) {
      state.SkipWithError("SHA-256 failed");
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(size));
}

void BM_Sign(benchmark::State& state, const BenchKey* key) {
  const internal::Sha256Digest digest = SomeDigest();
  for (auto _ : state) {
    auto sig = key->key->Sign(digest);
    if (!sig) {
      state.SkipWithError(sig.error().message.c_str());
      break;
    }
    benchmark::DoNotOptimize(sig->data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// RSA: one EVP_PKEY_CTX set up once (PKCS#1 v1.5, SHA-256 DigestInfo) and reused.
// Ed25519: one EVP_MD_CTX reused; PureEd25519 needs EVP_DigestSignInit before each one-shot sign.
// Each thread builds its own contexts: OpenSSL contexts are not shared between threads.
void BM_RawOpenSslSign(benchmark::State& state, const BenchKey* key) {
  const internal::Sha256Digest digest = SomeDigest();
  std::array<unsigned char, 1024> sig{};
  if (key->key->algorithm() == Algorithm::kRsaSha256) {
    util::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key->raw.get(), nullptr));
    if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx.get(), internal::Sha256Md()) != 1)
      SetupFailed("preparing the raw RSA context");
    for (auto _ : state) {
      size_t len = sig.size();
      if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, digest.data(), digest.size()) != 1) {
        state.SkipWithError("EVP_PKEY_sign failed");
        break;
      }
      benchmark::DoNotOptimize(sig.data());
    }
  } else {
    util::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx) SetupFailed("EVP_MD_CTX_new");
    for (auto _ : state) {
      size_t len = sig.size();
      if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key->raw.get()) != 1 ||
          EVP_DigestSign(ctx.get(), sig.data(), &len, digest.data(), digest.size()) != 1) {
        state.SkipWithError("Ed25519 EVP_DigestSign failed");
        break;
      }
      benchmark::DoNotOptimize(sig.data());
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// A typical message as a milter sees it: 10 header fields (values keep their leading space),
// then the body in libmilter-sized chunks; relaxed/relaxed, t= set, the default header policy.
void BM_SignMessage(benchmark::State& state, std::vector<std::shared_ptr<const SigningKey>> keys,
                    size_t body_size) {
  static const std::array<std::pair<std::string_view, std::string_view>, 10> kHeaders = {{
      {"Received", " from mail.example.org (mail.example.org [192.0.2.25])\r\n\tby mx.example.com"
                   " (Postfix) with ESMTPS id 4Tq1x23Kz9z9sWn\r\n\tfor <bob@example.com>;"
                   " Tue, 14 Nov 2023 22:13:20 +0000 (UTC)"},
      {"From", " Alice Example <alice@example.com>"},
      {"To", " Bob Example <bob@example.org>, carol@example.net"},
      {"Cc", " Dave <dave@example.org>"},
      {"Subject", " Quarterly report: figures attached, please review before Thursday"},
      {"Date", " Tue, 14 Nov 2023 22:13:20 +0000"},
      {"Message-ID", " <20231114221320.4Tq1x23Kz9z9sWn@mail.example.com>"},
      {"MIME-Version", " 1.0"},
      {"Content-Type", " text/plain; charset=utf-8; format=flowed"},
      {"Content-Transfer-Encoding", " 8bit"},
  }};
  const HeaderSelector selector(HeaderPolicy::Default());
  const std::string& body = MailBody(body_size);
  for (auto _ : state) {
    MessageSigner signer(keys, &selector, MessageOptions{kTimestamp, std::nullopt});
    for (const auto& [name, value] : kHeaders) signer.AddHeader(name, value);
    if (auto s = signer.EndOfHeaders(); !s) {
      state.SkipWithError(s.error().message.c_str());
      break;
    }
    FeedInChunks(body, kMilterChunk, [&](std::string_view c) { signer.AddBody(c); });
    auto fields = signer.Finish();
    if (!fields) {
      state.SkipWithError(fields.error().message.c_str());
      break;
    }
    benchmark::DoNotOptimize(fields->data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(body_size));
}

// Shares nothing, so 2 threads reach 2x unless the machine is busy: a signing case that scales
// worse than this control has contention of its own.
void BM_CpuControl(benchmark::State& state) {
  uint64_t x = static_cast<uint64_t>(state.thread_index()) + 1;
  for (auto _ : state) {
    for (int i = 0; i < 10000; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    benchmark::DoNotOptimize(x);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void RegisterAll() {
  constexpr size_t kChunk16 = 16 * kKiB;
  constexpr size_t kChunk64 = 64 * kKiB;
  struct HashCase {
    size_t size;
    size_t chunk;
  };
  const std::vector<HashCase> hash_cases = {
      {kKiB, kChunk16}, {100 * kKiB, kChunk16}, {10 * kMiB, kChunk16}, {10 * kMiB, kChunk64}};
  for (const HashCase& c : hash_cases) {
    MailBody(c.size);
    const std::string suffix = SizeName(c.size) + "/chunk:" + SizeName(c.chunk);
    for (Canon canon : {Canon::kRelaxed, Canon::kSimple}) {
      const std::string name = "BM_BodyHash/" + std::string(CanonName(canon)) + "/" + suffix;
      benchmark::RegisterBenchmark(name.c_str(), BM_BodyHash, canon, &MailBody(c.size), c.chunk);
    }
    if (c.size == 10 * kMiB && c.chunk == kChunk16) {
      for (Canon canon : {Canon::kRelaxed, Canon::kSimple}) {
        const std::string name = "BM_BodyHash/" + std::string(CanonName(canon)) + "/attachment/" + suffix;
        benchmark::RegisterBenchmark(name.c_str(), BM_BodyHash, canon, &AttachmentBody(c.size), c.chunk);
      }
    }
    benchmark::RegisterBenchmark(("BM_RawSha256/" + suffix).c_str(), BM_RawSha256, c.size,
                                 c.chunk);
  }

  const BenchKey* rsa = &RsaKey();
  const BenchKey* ed = &Ed25519Key();
  for (const BenchKey* k : {rsa, ed}) {
    benchmark::RegisterBenchmark(("BM_Sign/" + k->name).c_str(), BM_Sign, k);
    benchmark::RegisterBenchmark(("BM_RawOpenSslSign/" + k->name).c_str(), BM_RawOpenSslSign, k);
  }
  // Milter threads sign concurrently: PrivateKey must scale like independent raw contexts do.
  for (const BenchKey* k : {rsa, ed}) {
    benchmark::RegisterBenchmark(("BM_SignThreaded/" + k->name).c_str(), BM_Sign, k)
        ->Threads(1)
        ->Threads(2)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("BM_RawOpenSslSignThreaded/" + k->name).c_str(),
                                 BM_RawOpenSslSign, k)
        ->Threads(1)
        ->Threads(2)
        ->UseRealTime();
  }
  benchmark::RegisterBenchmark("BM_CpuControl", BM_CpuControl)
      ->Threads(1)
      ->Threads(2)
      ->UseRealTime();

  const std::vector<std::pair<std::string, std::vector<std::shared_ptr<const SigningKey>>>>
      key_sets = {{"rsa2048", {rsa->signing}}, {"rsa2048+ed25519", {rsa->signing, ed->signing}}};
  for (const auto& [label, keys] : key_sets) {
    for (size_t size : {kKiB, 100 * kKiB}) {
      MailBody(size);
      const std::string name = "BM_SignMessage/" + label + "/" + SizeName(size);
      benchmark::RegisterBenchmark(name.c_str(), BM_SignMessage, keys, size);
    }
  }
}

}  // namespace
}  // namespace dkimrotor::signer

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  dkimrotor::signer::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

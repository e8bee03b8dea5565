// What the signing session adds per message on the hot path: a 1 KiB message signed by the
// bare signer (MessageSigner, as the milter did before session/ existed) and the same message
// through SigningService::Begin + Session (settings and snapshot loads, policy, From parsing,
// domain match, key choice, verdict, counters). The difference is the session's cost.
// Ed25519 keeps the crypto small, so the overhead is visible; RSA-2048 shows it in proportion.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "keystore/signing_snapshot.h"
#include "session/session.h"
#include "session/signing_service.h"
#include "signer/header_selector.h"
#include "signer/message_signer.h"
#include "signer/private_key.h"
#include "signer/signing_key.h"

namespace dkimrotor {
namespace {

using signer::HeaderField;

const std::vector<HeaderField> kFields = {
    {"From", " Alice Example <alice@example.com>"},
    {"To", " Bob <bob@example.net>"},
    {"Subject", " quarterly figures"},
    {"Date", " Mon, 04 Mar 2024 10:00:00 +0000"},
    {"Message-ID", " <20240304100000.1234@example.com>"},
    {"MIME-Version", " 1.0"},
    {"Content-Type", " text/plain; charset=utf-8"}};

std::string Body() {
  std::string body;
  while (body.size() < 1024) body += "The figures for the quarter are attached, as discussed.\r\n";
  return body;
}

std::shared_ptr<const signer::SigningKey> Key(signer::Algorithm algorithm, const std::string& selector) {
  auto key = signer::PrivateKey::Generate(algorithm, 2048).value();
  return signer::SigningKey::Create({"example.com", selector, key, {}}).value();
}

void BM_BareSigner(benchmark::State& state, signer::Algorithm algorithm) {
  const signer::HeaderSelector selector(signer::HeaderPolicy::Default());
  const std::vector<std::shared_ptr<const signer::SigningKey>> keys = {Key(algorithm, "s1")};
  const std::string body = Body();
  for (auto _ : state) {
    signer::MessageSigner m(keys, &selector, {1700000000, std::nullopt});
    for (const auto& f : kFields) m.AddHeader(f);
    if (!m.EndOfHeaders()) state.SkipWithError("refused");
    m.AddBody(body);
    auto sigs = m.Finish();
    benchmark::DoNotOptimize(sigs);
  }
}

void BM_Session(benchmark::State& state, signer::Algorithm algorithm) {
  auto settings = std::make_shared<session::Settings>();
  settings->policy = session::SigningPolicy::Create({util::Cidr::Parse("10.0.0.0/8").value()}, true).value();
  settings->domains = {{"example.org", false}, {"example.com", true}, {"example.net", false}};
  keystore::SnapshotHolder holder;
  std::map<std::string, std::vector<keystore::SigningSnapshot::KeyList>, std::less<>> by_domain;
  by_domain["example.com"] = {{Key(algorithm, "s1"), Key(algorithm, "s2")}};
  holder.Store(std::make_shared<const keystore::SigningSnapshot>(std::move(by_domain), 1));
  session::SigningService service(&holder, settings, nullptr, nullptr);
  sockaddr_in client{};
  client.sin_family = AF_INET;
  inet_pton(AF_INET, "10.1.2.3", &client.sin_addr);
  const std::string body = Body();
  for (auto _ : state) {
    auto start = service.Begin({reinterpret_cast<const sockaddr*>(&client), ""});
    for (const auto& f : kFields) start.session->AddHeader(f.name, f.value);
    if (start.session->EndOfHeaders()) state.SkipWithError("refused");
    start.session->AddBody(body);
    auto v = start.session->Finish([](const std::vector<std::string>&) { return util::Ok(); });
    benchmark::DoNotOptimize(v);
  }
}

BENCHMARK_CAPTURE(BM_BareSigner, ed25519, signer::Algorithm::kEd25519Sha256);
BENCHMARK_CAPTURE(BM_Session, ed25519, signer::Algorithm::kEd25519Sha256);
BENCHMARK_CAPTURE(BM_BareSigner, rsa2048, signer::Algorithm::kRsaSha256);
BENCHMARK_CAPTURE(BM_Session, rsa2048, signer::Algorithm::kRsaSha256);

}  // namespace
}  // namespace dkimrotor

BENCHMARK_MAIN();

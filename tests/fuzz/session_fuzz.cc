// The signing session fed the callbacks a milter connection makes, in any order and with any
// data: AddHeader, EndOfHeaders, AddBody and Finish (twice, too). Whatever the sequence, no
// crash, and a message the session says it signed verifies with the in-process verifier over
// exactly the header fields and body the session took.
#include <arpa/inet.h>
#include <fuzzer/FuzzedDataProvider.h>
#include <netinet/in.h>

#include <map>
#include <memory>

#include "session/session.h"
#include "session/signing_service.h"
#include "signer/header_field.h"
#include "signer/private_key.h"
#include "signer/public_key.h"
#include "signer/signing_key.h"
#include "signer/verifier.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using namespace dkimrotor;

struct World {
  World() {
    auto settings = std::make_shared<session::Settings>();
    settings->policy =
        session::SigningPolicy::Create({util::Cidr::Parse("10.0.0.0/8").value()}, true).value();
    settings->domains = {{"example.com", true}};
    settings->signature_lifetime = 3600;
    std::vector<keystore::SigningSnapshot::KeyList> lists;
    for (auto [alg, bits, selector] : {std::tuple{signer::Algorithm::kEd25519Sha256, 256, "e1"},
                                       std::tuple{signer::Algorithm::kRsaSha256, 1024, "r1"}}) {
      auto key = signer::PrivateKey::Generate(alg, bits).value();
      public_keys[selector] = signer::PublicKey::FromDkim(alg, key->dkim_public_key()).value();
      lists.push_back({signer::SigningKey::Create({"example.com", selector, key, {}}).value()});
    }
    std::map<std::string, std::vector<keystore::SigningSnapshot::KeyList>, std::less<>> keys;
    keys["example.com"] = std::move(lists);
    holder.Store(std::make_shared<const keystore::SigningSnapshot>(std::move(keys), 1));
    service = std::make_unique<session::SigningService>(&holder, settings, nullptr, nullptr);
  }
  keystore::SnapshotHolder holder;
  std::map<std::string, std::shared_ptr<const signer::PublicKey>, std::less<>> public_keys;
  std::unique_ptr<session::SigningService> service;
};

const char* const kNames[] = {"From", "from", "Subject", "To", "Date", "Message-ID", "DKIM-Signature",
                              "Content-Type", "Reply-To", "X-Other"};

World* world = nullptr;  // keys made once, before the first input; lives for the whole run

}  // namespace

// Outside LLVMFuzzerTestOneInput so that making the keys (seconds on a loaded machine) does
// not count against the first input's -timeout.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  world = new World();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  sockaddr_in client{};
  client.sin_family = AF_INET;
  client.sin_addr.s_addr = in.ConsumeBool() ? htonl(0x0a010203) : htonl(0xc0000201);
  auto start = world->service->Begin(
      {reinterpret_cast<const sockaddr*>(&client), in.ConsumeBool() ? "user" : ""});
  if (!start.session) return 0;
  session::Session& s = *start.session;

  std::vector<signer::HeaderField> taken;  // what the session accepted before EndOfHeaders
  std::string body;
  bool headers_ended = false, body_wanted = false, finished = false;
  std::optional<session::Verdict> verdict;
  while (in.remaining_bytes() > 0 && !finished) {
    switch (in.ConsumeIntegralInRange<int>(0, 6)) {
      case 0:
      case 1: {
        std::string name = in.ConsumeBool() ? kNames[in.ConsumeIntegralInRange<size_t>(0, 9)]
                                            : in.ConsumeRandomLengthString(40);
        std::string value = in.ConsumeBool() ? " Alice <a@" + std::string(in.ConsumeBool() ? "example.com" : "sub.example.com") + ">"
                                             : in.ConsumeRandomLengthString(200);
        s.AddHeader(name, value);
        if (!headers_ended) taken.push_back({name, value});
        break;
      }
      case 2: {
        auto refused = s.EndOfHeaders();
        if (!headers_ended) body_wanted = !refused.has_value();
        headers_ended = true;
        break;
      }
      case 3:
      case 4: {
        std::string chunk = in.ConsumeRandomLengthString(500);
        s.AddBody(chunk);
        if (body_wanted) body += chunk;
        break;
      }
      case 5:
        s.SetId(in.ConsumeRandomLengthString(20));
        break;
      default: {
        const bool deliver_fails = in.ConsumeIntegralInRange<int>(0, 15) == 0;
        verdict = s.Finish([&](const std::vector<std::string>&) -> util::Status {
          if (deliver_fails) return util::Err(util::ErrorCode::kIo, "refused");
          return util::Ok();
        });
        if (verdict->outcome == session::Outcome::kSigned) FUZZ_CHECK(!deliver_fails, "signed though delivery failed");
        auto again = s.Finish([](const std::vector<std::string>&) { return util::Ok(); });
        FUZZ_CHECK(again.outcome != session::Outcome::kSigned, "a session signed twice");
        finished = true;
      }
    }
  }
  if (!verdict || verdict->outcome != session::Outcome::kSigned) return 0;
  if (!headers_ended) body.clear();  // Finish ended the headers itself: the body came too early
  FUZZ_CHECK(!verdict->signatures.empty(), "signed without a signature");
  // Every name the session took; those it left out of h= (';' in a name, bare CR in a value)
  // must not break the signature. Another DKIM-Signature would get a verdict of its own.
  for (const auto& f : taken)
    if (signer::FieldKey(f.name) == "dkim-signature") return 0;

  signer::MessageVerifier verifier([&](std::string_view, std::string_view selector, signer::Algorithm)
                                       -> util::Result<std::shared_ptr<const signer::PublicKey>> {
    auto it = world->public_keys.find(selector);
    if (it == world->public_keys.end()) return util::Err(util::ErrorCode::kNotFound, "no such selector");
    return it->second;
  });
  for (const auto& sig : verdict->signatures) {
    const size_t colon = sig.find(':');
    FUZZ_CHECK(colon != std::string::npos, "a signature field without a colon");
    verifier.AddHeader({sig.substr(0, colon), sig.substr(colon + 1)});
  }
  for (auto& f : taken) verifier.AddHeader(std::move(f));
  verifier.EndOfHeaders();
  verifier.AddBody(body);
  auto verdicts = verifier.Finish();
  FUZZ_CHECK(verdicts.size() == verdict->signatures.size(), "a signature the verifier did not see");
  for (const auto& v : verdicts) {
    if (!v.status) std::fprintf(stderr, "%s: %s\n", v.selector.c_str(), v.status.error().message.c_str());
    FUZZ_CHECK(v.status.has_value(), "a signed message does not verify");
  }
  return 0;
}

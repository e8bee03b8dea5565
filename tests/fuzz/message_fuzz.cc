// The message parser and both canonicalizers: the result must not depend on how the input is
// split. The input is a raw message; the chunk sizes come from a generator seeded by it.
#include <optional>
#include <string>

#include "signer/body_canonicalizer.h"
#include "signer/header_field.h"
#include "signer/message_parser.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using namespace dkimrotor;

struct StringSink : signer::BodyCanonicalizer::Sink {
  void Write(std::string_view bytes) override { out.append(bytes); }
  std::string out;
};

std::string Canonical(signer::Canon mode, const std::vector<std::string_view>& chunks,
                      uint64_t* length) {
  StringSink sink;
  signer::BodyCanonicalizer canon(mode, &sink);
  for (auto c : chunks) canon.Update(c);
  canon.Finish();
  *length = canon.canonical_length();
  return std::move(sink.out);
}

bool SameEnd(const std::optional<signer::HeaderEnd>& a, const std::optional<signer::HeaderEnd>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || (a->header_bytes == b->header_bytes && a->body_start == b->body_start &&
                a->separator_missing == b->separator_missing);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view message = fuzz::AsText(data, size);
  auto rng = fuzz::RngFor(message);
  const auto chunks = fuzz::RandomChunks(message, rng);

  // The end of the header block: one search over the whole message, and the milter-like search
  // over growing prefixes that carries its HeaderScan from call to call.
  const auto whole = signer::FindEndOfHeaders(message, /*at_eof=*/true);
  signer::HeaderScan scan;
  std::optional<signer::HeaderEnd> grown;
  size_t have = 0;
  for (auto c : chunks) {
    have += c.size();
    grown = signer::FindEndOfHeaders(message.substr(0, have), &scan, /*at_eof=*/false);
    if (grown) break;
  }
  if (!grown) grown = signer::FindEndOfHeaders(message, &scan, /*at_eof=*/true);
  FUZZ_CHECK(SameEnd(whole, grown), "the end of headers depends on how the message arrived");
  if (whole) {
    FUZZ_CHECK(whole->header_bytes <= whole->body_start && whole->body_start <= message.size(),
               "the header end lies outside the message");
  }

  const size_t header_bytes = whole ? whole->header_bytes : message.size();
  if (auto fields = signer::ParseHeaderBlock(message.substr(0, header_bytes))) {
    std::string canonical;
    for (const auto& f : *fields) {
      for (auto mode : {signer::Canon::kSimple, signer::Canon::kRelaxed})
        signer::AppendCanonicalHeader(mode, f.name, f.value, &canonical);
      (void)signer::FieldKey(f.name);
    }
  }

  const std::string_view body = whole ? message.substr(whole->body_start) : std::string_view();
  auto body_rng = fuzz::RngFor(body);
  const auto body_chunks = fuzz::RandomChunks(body, body_rng);
  std::vector<std::string_view> bytes;
  if (body.size() <= 4096)
    for (size_t i = 0; i < body.size(); ++i) bytes.push_back(body.substr(i, 1));
  for (auto mode : {signer::Canon::kSimple, signer::Canon::kRelaxed}) {
    uint64_t whole_length = 0, chunked_length = 0, byte_length = 0;
    const std::string one = Canonical(mode, {body}, &whole_length);
    FUZZ_CHECK(whole_length == one.size(), "canonical_length() differs from the bytes emitted");
    FUZZ_CHECK(Canonical(mode, body_chunks, &chunked_length) == one && chunked_length == whole_length,
               "the canonical body depends on how the body was split");
    if (!bytes.empty())
      FUZZ_CHECK(Canonical(mode, bytes, &byte_length) == one,
                 "the canonical body differs when fed byte by byte");
  }
  return 0;
}

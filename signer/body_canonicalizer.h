// Streaming body canonicalization (RFC 6376 section 3.4.3 and 3.4.4, with erratum 1384:
// relaxed removes trailing white space of each line before empty lines at the end are ignored).
// The body may arrive in chunks split at any byte, inside a CRLF or a run of white space;
// memory is O(1) whatever the body size. A bare LF is a line break, as if it were CRLF.
// Borrows its Sink, which the caller keeps alive. Not thread-safe: one instance per message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "signer/canonicalization.h"

namespace dkimrotor::signer {

class BodyCanonicalizer {
 public:
  // Receives the canonical body in pieces of up to kBufferSize bytes (or more, for large spans).
  class Sink {
   public:
    virtual ~Sink() = default;
    virtual void Write(std::string_view canonical_bytes) = 0;
  };

  static constexpr size_t kBufferSize = 16 * 1024;

  BodyCanonicalizer(Canon mode, Sink* sink) : mode_(mode), sink_(sink) {}
  BodyCanonicalizer(const BodyCanonicalizer&) = delete;
  BodyCanonicalizer& operator=(const BodyCanonicalizer&) = delete;

  void Update(std::string_view chunk);
  // Ends the body: adds the final CRLF where the algorithm wants one and flushes the sink.
  // Update() must not be called after Finish().
  void Finish();

  // Bytes handed to the sink so far (the canonical length, once finished).
  uint64_t canonical_length() const { return emitted_ + used_; }

 private:
  void UpdateSimple(const char* p, const char* end);
  void UpdateRelaxed(const char* p, const char* end);
  template <bool kRelaxed>
  const char* EmitRun(const char* start, const char* end);
  void EndLine();
  void BeginContent();
  void Emit(const char* p, size_t n) {
    if (n < 64 && n < kBufferSize - used_) {  // the common small piece: no flush
      __builtin_memcpy(buffer_ + used_, p, n);
      used_ += n;
      return;
    }
    EmitSlow(p, n);
  }
  void EmitSlow(const char* p, size_t n);
  void Flush();

  const Canon mode_;
  Sink* const sink_;
  uint64_t pending_crlfs_ = 0;    // empty lines seen but not yet known not to be trailing
  bool line_has_content_ = false;
  bool pending_wsp_ = false;      // relaxed: a white-space run not yet known not to end the line
  bool cr_pending_ = false;       // the last byte seen was CR; a LF may follow in the next chunk
  uint64_t emitted_ = 0;
  size_t used_ = 0;
  char buffer_[kBufferSize];
};

}  // namespace dkimrotor::signer

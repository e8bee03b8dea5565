#include "signer/body_canonicalizer.h"

#include <cstring>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace dkimrotor::signer {
namespace {

constexpr char kCrlf[] = "\r\n";
// Spans at least this long bypass the buffer: one copy fewer on large plain runs.
constexpr size_t kDirectWrite = 4096;

bool IsWspOrLineEnd(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// First byte at or after p that simple canonicalization must look at: CR or LF.
const char* ScanSimple(const char* p, const char* end) {
#ifdef __SSE2__
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  while (end - p >= 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    int mask = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  for (; p < end; ++p)
    if (*p == '\r' || *p == '\n') return p;
  return end;
}

// First byte at or after p that relaxed canonicalization must look at: HTAB, CR, LF, or a SP
// that starts a run of white space or may end a line. A lone SP between words passes as is;
// a SP that is the chunk's last byte is examined, since the next chunk decides its fate.
const char* ScanRelaxed(const char* p, const char* end) {
#ifdef __SSE2__
  const __m128i sp = _mm_set1_epi8(' ');
  const __m128i tab = _mm_set1_epi8('\t');
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  while (end - p >= 17) {  // reads p[0..16]
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i n = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 1));
    __m128i control = _mm_or_si128(_mm_cmpeq_epi8(v, tab),
                                   _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
    __m128i next_ws = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(n, sp), _mm_cmpeq_epi8(n, tab)),
                                   _mm_or_si128(_mm_cmpeq_epi8(n, cr), _mm_cmpeq_epi8(n, lf)));
    __m128i hit = _mm_or_si128(control, _mm_and_si128(_mm_cmpeq_epi8(v, sp), next_ws));
    int mask = _mm_movemask_epi8(hit);
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  for (; p < end; ++p) {
    char c = *p;
    if (c == '\t' || c == '\r' || c == '\n') return p;
    if (c == ' ' && (p + 1 == end || IsWspOrLineEnd(p[1]))) return p;
  }
  return end;
}

}  // namespace

void BodyCanonicalizer::Update(std::string_view chunk) {
  const char* p = chunk.data();
  const char* end = p + chunk.size();
  if (mode_ == Canon::kRelaxed) {
    UpdateRelaxed(p, end);
  } else {
    UpdateSimple(p, end);
  }
}

void BodyCanonicalizer::UpdateSimple(const char* p, const char* end) {
  while (p < end) {
    if (cr_pending_) {
      cr_pending_ = false;
      if (*p == '\n') {
        EndLine();
        ++p;
        continue;
      }
      BeginContent();
      Emit("\r", 1);  // a bare CR is ordinary content
    }
    char c = *p;
    if (c == '\r') {
      cr_pending_ = true;
      ++p;
    } else if (c == '\n') {
      EndLine();
      ++p;
    } else {
      BeginContent();
      const char* q = ScanSimple(p + 1, end);
      Emit(p, static_cast<size_t>(q - p));
      p = q;
    }
  }
}

void BodyCanonicalizer::UpdateRelaxed(const char* p, const char* end) {
  while (p < end) {
    if (cr_pending_) {
      cr_pending_ = false;
      if (*p == '\n') {
        EndLine();
        ++p;
        continue;
      }
      BeginContent();
      Emit("\r", 1);
    }
    char c = *p;
    if (c == ' ' || c == '\t') {
      pending_wsp_ = true;
      ++p;
    } else if (c == '\r') {
      cr_pending_ = true;
      ++p;
    } else if (c == '\n') {
      EndLine();
      ++p;
    } else {
      BeginContent();
      const char* q = ScanRelaxed(p + 1, end);
      Emit(p, static_cast<size_t>(q - p));
      p = q;
    }
  }
}

void BodyCanonicalizer::EndLine() {
  pending_wsp_ = false;  // relaxed: white space at the end of a line is removed
  if (line_has_content_) {
    Emit(kCrlf, 2);
    line_has_content_ = false;
  } else {
    ++pending_crlfs_;
  }
}

void BodyCanonicalizer::BeginContent() {
  if (!line_has_content_) {
    for (; pending_crlfs_ > 0; --pending_crlfs_) Emit(kCrlf, 2);
    line_has_content_ = true;
  }
  if (pending_wsp_) {
    Emit(" ", 1);
    pending_wsp_ = false;
  }
}

void BodyCanonicalizer::Finish() {
  if (cr_pending_) {
    cr_pending_ = false;
    BeginContent();
    Emit("\r", 1);
  }
  pending_wsp_ = false;
  if (line_has_content_) {
    Emit(kCrlf, 2);
    line_has_content_ = false;
  }
  pending_crlfs_ = 0;
  // Simple: an empty body is a single CRLF. Relaxed: it stays empty (RFC 6376 3.4.4, 3.4.3).
  if (mode_ == Canon::kSimple && canonical_length() == 0) Emit(kCrlf, 2);
  Flush();
}

void BodyCanonicalizer::Emit(const char* p, size_t n) {
  if (n >= kDirectWrite) {
    Flush();
    sink_->Write(std::string_view(p, n));
    emitted_ += n;
    return;
  }
  while (n > 0) {
    size_t take = std::min(n, kBufferSize - used_);
    std::memcpy(buffer_ + used_, p, take);
    used_ += take;
    p += take;
    n -= take;
    if (used_ == kBufferSize) Flush();
  }
}

void BodyCanonicalizer::Flush() {
  if (used_ == 0) return;
  sink_->Write(std::string_view(buffer_, used_));
  emitted_ += used_;
  used_ = 0;
}

}  // namespace dkimrotor::signer

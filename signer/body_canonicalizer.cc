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

// Relaxed and simple both keep "content CRLF content" as it is, so a run need not stop at a
// line end unless that line end is bare, or the next line may be empty (CRLF CR, CRLF LF),
// or the chunk ends within two bytes. The run always starts at a content byte, so p[-1] is in
// the chunk. The scalar tail stops at every CR and LF, as before (a superset of the stops).
#ifdef __SSE2__
inline __m128i Eq(__m128i v, char c) { return _mm_cmpeq_epi8(v, _mm_set1_epi8(c)); }

// Bit i set where p[i] == c, for i in 0..63.
struct Masks {
  uint64_t sp = 0, tab = 0, cr = 0, lf = 0;
};
inline Masks Classify64(const char* p) {
  Masks m;
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
    const int shift = 16 * k;
    m.sp |= static_cast<uint64_t>(static_cast<uint16_t>(_mm_movemask_epi8(Eq(v, ' ')))) << shift;
    m.tab |= static_cast<uint64_t>(static_cast<uint16_t>(_mm_movemask_epi8(Eq(v, '\t')))) << shift;
    m.cr |= static_cast<uint64_t>(static_cast<uint16_t>(_mm_movemask_epi8(Eq(v, '\r')))) << shift;
    m.lf |= static_cast<uint64_t>(static_cast<uint16_t>(_mm_movemask_epi8(Eq(v, '\n')))) << shift;
  }
  return m;
}
inline uint64_t Bit(bool b, int i) { return static_cast<uint64_t>(b) << i; }
inline bool IsEol(char c) { return c == '\r' || c == '\n'; }
#endif

// All bits below position n (n in 0..64).
inline uint64_t BitsBelow(ptrdiff_t n) { return n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1; }

}  // namespace

// The fast path: from `start`, a content byte of a line whose earlier bytes are all emitted,
// emits every byte whose canonical form is itself, and resolves inline the two common cases
// that change it: a white-space run inside a line (relaxed: one SP) and CRLFs followed by
// empty lines and then content (kept as they are). Returns the first byte it leaves to the
// state machine: a bare CR or LF, white space that may end a line, a run of line ends that
// reaches the chunk's end, or the chunk's end itself.
template <bool kRelaxed>
const char* BodyCanonicalizer::EmitRun(const char* start, const char* end) {
  const char* s = start + 1;  // scanning position; s[-1] is always in the chunk
  const char* stop = end;
#ifdef __SSE2__
  while (end - s >= 66) {  // reads s[-1..65]
    const Masks m = Classify64(s);
    const char c64 = s[64], c65 = s[65];
    const uint64_t eol = m.cr | m.lf;
    const uint64_t next_lf = (m.lf >> 1) | Bit(c64 == '\n', 63);
    const uint64_t next2_eol = (eol >> 2) | Bit(IsEol(c64), 62) | Bit(IsEol(c65), 63);
    const uint64_t prev_cr = (m.cr << 1) | Bit(s[-1] == '\r', 0);
    uint64_t hit = (m.cr & ~next_lf) | (m.lf & ~prev_cr) | (m.cr & next_lf & next2_eol);
    if constexpr (kRelaxed) {
      const uint64_t next_ws =
          ((m.sp | m.tab | eol) >> 1) | Bit(c64 == ' ' || c64 == '\t' || IsEol(c64), 63);
      hit |= m.tab | (m.sp & next_ws);
    }
    const char* resume = s + 64;
    while (hit != 0) {
      const char* h = s + __builtin_ctzll(hit);
      const char* q = h;
      if (*h == '\r' && h[1] == '\n') {
        // CRLF followed by empty lines: kept as is when content follows in this chunk.
        while (end - q >= 2 && q[0] == '\r' && q[1] == '\n') q += 2;
        if (q == end || IsWspOrLineEnd(*q)) {
          stop = h;
          goto done;
        }
      } else if (kRelaxed && (*h == ' ' || *h == '\t')) {
        while (q < end && (*q == ' ' || *q == '\t')) ++q;
        if (q == end || IsEol(*q)) {  // may be trailing white space: the state machine decides
          stop = h;
          goto done;
        }
        Emit(start, static_cast<size_t>(h - start));
        Emit(" ", 1);
        start = q;
      } else {
        stop = h;  // a bare CR or LF
        goto done;
      }
      if (q - s >= 64) {
        resume = q;
        break;
      }
      hit &= ~BitsBelow(q - s);
    }
    s = resume;
  }
  // The loop may have passed a CR whose LF is next: stop at that CR, not between the two.
  if (s < end && *s == '\n' && s[-1] == '\r') {
    stop = s - 1;
    goto done;
  }
#endif
  for (; s < end; ++s) {
    char c = *s;
    if (c == '\r' || c == '\n') break;
    if constexpr (kRelaxed) {
      if (c == '\t') break;
      if (c == ' ' && (s + 1 == end || IsWspOrLineEnd(s[1]))) break;
    }
  }
  stop = s;
done:
  Emit(start, static_cast<size_t>(stop - start));
  line_has_content_ = stop[-1] != '\n';
  return stop;
}


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
      p = EmitRun<false>(p, end);
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
      p = EmitRun<true>(p, end);
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

void BodyCanonicalizer::EmitSlow(const char* p, size_t n) {
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

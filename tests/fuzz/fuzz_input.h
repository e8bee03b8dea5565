// What the fuzz targets share: chunk sizes drawn from a generator seeded by the input itself,
// so that a crash reproduces from its file alone, and a loud check that aborts (libFuzzer then
// saves the input) when a property fails.
// Stateless helpers; each target runs single-threaded.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string_view>
#include <vector>

namespace dkimrotor::fuzz {

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Cuts `data` into pieces of 1 byte, a few bytes, and up to a few hundred, so that every kind
// of boundary (inside a CRLF, a white-space run, a header name) gets tried.
inline std::vector<std::string_view> RandomChunks(std::string_view data, std::minstd_rand& rng) {
  std::vector<std::string_view> out;
  while (!data.empty()) {
    size_t n = 1;
    switch (rng() % 4) {
      case 0: n = 1; break;
      case 1: n = 1 + rng() % 8; break;
      case 2: n = 1 + rng() % 300; break;
      default: n = data.size(); break;
    }
    n = std::min(n, data.size());
    out.push_back(data.substr(0, n));
    data.remove_prefix(n);
  }
  return out;
}

inline std::minstd_rand RngFor(std::string_view input) {
  return std::minstd_rand(static_cast<std::minstd_rand::result_type>(
      std::hash<std::string_view>{}(input) % 2147483646 + 1));
}

// A property that must hold: abort with the reason, so libFuzzer keeps the input.
#define FUZZ_CHECK(cond, what)                                                        \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "fuzz property failed: %s (%s:%d)\n", what, __FILE__, __LINE__); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

}  // namespace dkimrotor::fuzz

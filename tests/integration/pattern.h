// A reproducible byte stream for the output tests: byte `p` of the stream
// of `seed` is a fixed function of (seed, p), so a test can check any piece
// of output at its offset without keeping what the generator wrote, and a
// reordered, repeated or shifted piece never matches. pattern_gen.cc writes
// it; output_test.cc checks it.
//
// Pure functions, safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace varan::testing {

// splitmix64 of the 8-byte word `index` of stream `seed`.
inline uint64_t PatternWord(uint64_t seed, uint64_t index) {
  uint64_t z = seed * 0xD1B54A32D192ED03ULL + index * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Writes bytes [offset, offset + n) of stream `seed` to `out`.
inline void FillPattern(uint64_t seed, uint64_t offset, char* out, size_t n) {
  size_t done = 0;
  while (done < n) {
    const uint64_t at = offset + done;
    const uint64_t word = PatternWord(seed, at / 8);
    const size_t skip = at % 8;
    size_t take = 8 - skip;
    if (take > n - done) take = n - done;
    std::memcpy(out + done, reinterpret_cast<const char*>(&word) + skip, take);
    done += take;
  }
}

inline std::string Pattern(uint64_t seed, uint64_t offset, size_t n) {
  std::string s(n, '\0');
  FillPattern(seed, offset, s.data(), n);
  return s;
}

// True when `data` is bytes [offset, offset + data.size()) of stream `seed`.
inline bool MatchesPattern(uint64_t seed, uint64_t offset,
                           const std::string& data) {
  return data == Pattern(seed, offset, data.size());
}

}  // namespace varan::testing

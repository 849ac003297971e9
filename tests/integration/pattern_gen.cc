// The output tests' generator: `varan_pattern_gen BYTES SEED [RATE [EXIT]]`
// writes BYTES bytes of the reproducible stream of SEED (pattern.h) to
// stdout in 256 KiB writes, at most RATE bytes per second when RATE is not
// 0, then exits with EXIT (default 0); 1 if stdout fails, 2 on bad usage.
// Blocked writes are how back-pressure shows: a slow reader slows it down.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "tests/integration/pattern.h"

namespace {

bool ParseU64(const char* text, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  *out = std::strtoull(text, &end, 10);
  return errno == 0 && end != text && *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t total = 0, seed = 0, rate = 0, exit_code = 0;
  if (argc < 3 || argc > 5 || !ParseU64(argv[1], &total) ||
      !ParseU64(argv[2], &seed) || (argc > 3 && !ParseU64(argv[3], &rate)) ||
      (argc > 4 && !ParseU64(argv[4], &exit_code))) {
    std::fprintf(stderr, "usage: varan_pattern_gen BYTES SEED [RATE [EXIT]]\n");
    return 2;
  }
  constexpr size_t kBlock = 256 * 1024;
  std::string buf(kBlock, '\0');
  const auto start = std::chrono::steady_clock::now();
  uint64_t written = 0;
  while (written < total) {
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(kBlock, total - written));
    varan::testing::FillPattern(seed, written, buf.data(), n);
    size_t at = 0;
    while (at < n) {
      ssize_t w = write(STDOUT_FILENO, buf.data() + at, n - at);
      if (w < 0) {
        if (errno == EINTR) continue;
        std::fprintf(stderr, "varan_pattern_gen: write: %s\n",
                     std::strerror(errno));
        return 1;
      }
      at += static_cast<size_t>(w);
    }
    written += n;
    if (rate > 0) {
      std::this_thread::sleep_until(
          start + std::chrono::microseconds(written * 1000000 / rate));
    }
  }
  return static_cast<int>(exit_code);
}

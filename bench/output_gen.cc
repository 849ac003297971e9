// The output benchmark's generator (output_bench runs it on a periphery and
// through ssh alike): `output_gen BYTES` writes BYTES of pseudo-random bytes
// to stdout and exits 0 (1 if stdout fails, 2 on bad usage). One 1 MiB block
// of xorshift64 output, fixed seed, written again and again: the bytes are
// not all zeros (nothing on the way can compress them away) and producing
// them costs next to no CPU, so the figures are the transport's.
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  char* end = nullptr;
  const unsigned long long total =
      argc == 2 ? std::strtoull(argv[1], &end, 10) : 0;
  if (argc != 2 || end == argv[1] || *end != '\0') {
    std::fprintf(stderr, "usage: output_gen BYTES\n");
    return 2;
  }
  std::vector<uint64_t> block((1 << 20) / sizeof(uint64_t));
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  for (uint64_t& word : block) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    word = x;
  }
  const char* bytes = reinterpret_cast<const char*>(block.data());
  const size_t block_size = block.size() * sizeof(uint64_t);
  unsigned long long left = total;
  size_t at = 0;  // offset in the block where the next write starts
  while (left > 0) {
    size_t n = block_size - at;
    if (n > left) n = static_cast<size_t>(left);
    ssize_t w = write(STDOUT_FILENO, bytes + at, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "output_gen: write: %s\n", std::strerror(errno));
      return 1;
    }
    left -= static_cast<unsigned long long>(w);
    at = (at + static_cast<size_t>(w)) % block_size;
  }
  return 0;
}

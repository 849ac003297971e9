// TailRing: the last `capacity` bytes of a stream, kept in a ring so that
// appending costs one copy of what is appended, whatever the capacity (a
// string erased at the front would move the whole tail per append). The
// buffer grows with what arrives, up to the capacity, and is freed by
// Take().
//
// Not thread-safe: the owner serializes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace varan::core {

class TailRing {
 public:
  explicit TailRing(uint64_t capacity = 0) : capacity_(capacity) {}

  // Appends `data`, forgetting what falls out of the last capacity bytes.
  void Append(std::string_view data);
  // Forgets everything (the next byte starts a new tail).
  void Clear();
  // Bytes held (at most the capacity).
  uint64_t size() const { return buf_.size(); }
  bool empty() const { return buf_.empty(); }
  // The bytes held, oldest first; the ring is empty afterwards.
  std::string Take();

 private:
  uint64_t capacity_;
  // Until full: the bytes in order. Full: a ring whose oldest byte is at
  // start_.
  std::string buf_;
  uint64_t start_ = 0;
};

}  // namespace varan::core

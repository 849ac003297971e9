#include "core/jobs/tail_ring.h"

#include <algorithm>
#include <cstring>

namespace varan::core {

void TailRing::Append(std::string_view data) {
  if (capacity_ == 0 || data.empty()) return;
  if (data.size() >= capacity_) {
    // Only the end of `data` stays.
    buf_.assign(data.substr(data.size() - capacity_));
    start_ = 0;
    return;
  }
  if (buf_.size() < capacity_) {
    // Not full yet, so not wrapped (start_ is 0).
    const uint64_t n = std::min<uint64_t>(capacity_ - buf_.size(), data.size());
    buf_.append(data.substr(0, n));
    data.remove_prefix(n);
  }
  // Full: overwrite the oldest bytes.
  while (!data.empty()) {
    const uint64_t n = std::min<uint64_t>(capacity_ - start_, data.size());
    std::memcpy(buf_.data() + start_, data.data(), n);
    start_ = (start_ + n) % capacity_;
    data.remove_prefix(n);
  }
}

void TailRing::Clear() {
  buf_ = std::string();
  start_ = 0;
}

std::string TailRing::Take() {
  std::string out;
  if (start_ == 0) {
    out.swap(buf_);
  } else {
    out.reserve(buf_.size());
    out.append(buf_, start_);
    out.append(buf_, 0, start_);
  }
  Clear();
  return out;
}

}  // namespace varan::core

#include "common/heap.h"

#include <malloc.h>

namespace varan {

void KeepHeapForStreams() {
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  mallopt(M_ARENA_MAX, 1);
}

}  // namespace varan

// Heap settings for processes that move output: glibc serves allocations
// above its mmap threshold (128 KiB, raised on the fly) with fresh mappings
// and gives the top of the heap back once 2x that is free, so every output
// message of 256 KiB-1 MiB (and gRPC's buffers for it) faulted in new
// pages and returned them: in output_bench that churn was most of the
// client's CPU and a large share of core's. KeepHeapForStreams serves
// blocks under 4 MiB from the heap and keeps up to 32 MiB free at its top.
#pragma once

namespace varan {

// Call once at the start of main, before threads are started.
void KeepHeapForStreams();

}  // namespace varan

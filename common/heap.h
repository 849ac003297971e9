// Heap settings for processes that move output: glibc serves allocations
// above its mmap threshold (128 KiB, raised on the fly) with fresh mappings
// and gives the top of the heap back once 2x that is free, so every output
// message of 256 KiB-1 MiB (and gRPC's buffers for it) faulted in new
// pages and returned them: in output_bench that churn was most of the
// client's CPU and a large share of core's. KeepHeapForStreams serves
// blocks under 4 MiB from the heap and keeps up to 32 MiB free at its top.
//
// It also keeps one heap (arena) for all threads. With glibc's default (up
// to 8 per core) a message allocated on one gRPC thread and freed on
// another goes back to the first thread's arena, and each arena kept its
// own free blocks and 32 MiB top: core's RSS grew 80 MB in output_bench's
// first 1 GiB round (6 arenas of 6-24 MB), 17-29 MB with one arena, at
// the same CPU per GiB. Small allocations do not contend on the arena's
// lock: they come from each thread's cache (tcache).
#pragma once

namespace varan {

// Call once at the start of main, before threads are started.
void KeepHeapForStreams();

}  // namespace varan

// A command's two output streams as array indexes, as core and the client
// library keep per-stream state: 0 stdout, 1 stderr. An unspecified (or
// newer) stream counts as stdout, as core files it.
#pragma once

#include <cstddef>

#include "varan/v1/common.pb.h"

namespace varan {

inline size_t StreamIndex(varan::v1::OutputStream stream) {
  return stream == varan::v1::OUTPUT_STREAM_STDERR ? 1 : 0;
}

inline varan::v1::OutputStream StreamOf(size_t index) {
  return index == 1 ? varan::v1::OUTPUT_STREAM_STDERR
                    : varan::v1::OUTPUT_STREAM_STDOUT;
}

}  // namespace varan

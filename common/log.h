// Include this instead of spdlog directly: it adds fmt support for the
// types Varan logs that fmt does not know (Debian's Abseil has its own
// absl::string_view, distinct from std::string_view).
#pragma once

#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view s, FormatContext& ctx) const {
    return fmt::formatter<fmt::string_view>::format(
        fmt::string_view(s.data(), s.size()), ctx);
  }
};

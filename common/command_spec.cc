#include "common/command_spec.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace varan {

absl::Status ValidateCommandSpec(const varan::v1::CommandSpec& spec) {
  if (spec.argv_size() > 0 && !spec.shell().empty()) {
    return absl::InvalidArgumentError(
        "command spec has both argv and shell; set exactly one");
  }
  if (spec.argv_size() == 0 && spec.shell().empty()) {
    return absl::InvalidArgumentError(
        "command spec has neither argv nor shell; set exactly one");
  }
  if (spec.argv_size() > 0 && spec.argv(0).empty()) {
    return absl::InvalidArgumentError("argv[0] is empty");
  }
  for (const auto& arg : spec.argv()) {
    if (arg.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("argv contains a NUL byte");
    }
  }
  if (spec.shell().find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("shell command contains a NUL byte");
  }
  for (const auto& [key, value] : spec.env()) {
    if (key.empty() || key.find('=') != std::string::npos ||
        key.find('\0') != std::string::npos ||
        value.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid environment variable name \"", key,
                       "\" (must be non-empty, without '=' or NUL)"));
    }
  }
  if (spec.timeout().seconds() < 0 || spec.timeout().nanos() < 0) {
    return absl::InvalidArgumentError("timeout is negative");
  }
  return absl::OkStatus();
}

}  // namespace varan

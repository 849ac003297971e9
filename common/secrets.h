// Secret material on disk: tokens and credentials.
//
// Secrets are 256-bit random values, hex encoded. Files holding them are
// created with mode 0600 and written atomically (temporary file + rename), so
// a crash never leaves a half-written secret. Secret values are never logged;
// error messages name the file, not its content. Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace varan {

// "`what`: <strerror(err)>" as NOT_FOUND (ENOENT), PERMISSION_DENIED (EACCES,
// EPERM) or INTERNAL (anything else), for file operations.
absl::Status ErrnoStatus(int err, absl::string_view what);

// 32 random bytes from the kernel, as 64 lowercase hex characters.
std::string GenerateSecret();

// Reads a secret from `path`, trimming surrounding whitespace. Errors:
// NOT_FOUND (missing file), PERMISSION_DENIED (unreadable), INVALID_ARGUMENT
// (empty). Messages name the path.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path);

// Writes `content` to `path` with mode 0600, atomically: a temporary file
// beside it, fsync, rename. Errors name the file, never the content.
absl::Status WritePrivateFile(const std::string& path,
                              absl::string_view content);

// Writes `secret` plus a newline to `path` with mode 0600, atomically.
absl::Status WriteSecretFile(const std::string& path, absl::string_view secret);

// Returns the secret in `path`, creating it with a fresh random value first
// if the file does not exist. `*created` tells which happened.
absl::StatusOr<std::string> EnsureSecretFile(const std::string& path,
                                             bool* created);

// A join token as a periphery is given it: the secret, then optionally "."
// and core's CA pin ("<64 hex>.sha256:<64 hex>", see
// CreateJoinTokenResponse.token in proto/varan/v1/core.proto).
struct JoinTokenText {
  std::string secret;
  std::string pin;  // empty when the token carries none
};
JoinTokenText SplitJoinToken(absl::string_view token);
// `secret` alone when `pin` is empty, else "<secret>.<pin>".
std::string JoinTokenWithPin(absl::string_view secret, absl::string_view pin);

// SHA-256 of `secret`, as 64 lowercase hex characters: what core stores
// instead of a token.
std::string SecretHash(absl::string_view secret);

// A warning (empty when none) when `path` holding secrets can be read or
// written by its group or others, e.g. "/etc/varan/join.token is readable by
// group or others (mode 0644); chmod 600 it". Missing files give no warning
// (reading them reports that).
std::string LoosePermissionsWarning(const std::string& path);

// Compares two secrets in time independent of where they differ.
bool SecretEquals(absl::string_view a, absl::string_view b);

// Creates `dir` (and parents) with mode 0700 if missing. Errors name `dir`.
absl::Status EnsurePrivateDir(const std::string& dir);

}  // namespace varan

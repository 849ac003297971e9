// FileLock: an exclusive lock on a file, held for as long as the object
// lives, to keep a second process off something only one may use (core's
// SQLite database).
//
// It is flock(2) on a file of its own: the kernel drops it when the holder
// exits in any way (kill -9 included), so there is no stale lock to clean
// up, and it does not mix with the POSIX record locks SQLite takes on the
// database itself. The holder writes its pid into the file, so the one
// refused can say who holds it. A second FileLock on the same path in the
// same process is refused too. Linux only (local file systems).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace varan {

class FileLock {
 public:
  // Creates `path` (mode 0600) when missing and takes the lock without
  // waiting. Errors: FAILED_PRECONDITION when another holds it, with the
  // holder's pid as it recorded it (0 when unknown) in `*holder` if given
  // and in the message, which names `path`; others (NOT_FOUND,
  // PERMISSION_DENIED, ...) when the file cannot be opened.
  static absl::StatusOr<std::unique_ptr<FileLock>> Acquire(
      const std::string& path, pid_t* holder = nullptr);

  ~FileLock();  // releases the lock
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  const int fd_;
};

}  // namespace varan

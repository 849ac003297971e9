#include "common/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/secrets.h"

namespace varan {
namespace {

// The pid the holder wrote, 0 when there is none.
pid_t RecordedPid(int fd) {
  char buf[32] = {};
  const ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  int pid = 0;
  if (n <= 0 || !absl::SimpleAtoi(
                    absl::StripAsciiWhitespace(std::string(buf, n)), &pid)) {
    return 0;
  }
  return pid;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileLock>> FileLock::Acquire(
    const std::string& path, pid_t* holder) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot open ", path));
  std::unique_ptr<FileLock> lock(new FileLock(fd));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) {
      return ErrnoStatus(errno, absl::StrCat("cannot lock ", path));
    }
    const pid_t pid = RecordedPid(fd);
    if (holder != nullptr) *holder = pid;
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is locked by ",
                     pid > 0 ? absl::StrCat("process ", pid)
                             : std::string("another process")));
  }
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) !=
                                   static_cast<ssize_t>(pid.size())) {
    return ErrnoStatus(errno, absl::StrCat("cannot write ", path));
  }
  return lock;
}

FileLock::~FileLock() { close(fd_); }

}  // namespace varan

#include "common/secrets.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "openssl/evp.h"

namespace varan {

absl::Status ErrnoStatus(int err, absl::string_view what) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

std::string GenerateSecret() {
  unsigned char buf[32];
  size_t got = 0;
  while (got < sizeof(buf)) {
    ssize_t n = getrandom(buf + got, sizeof(buf) - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // The kernel's random source failing is not recoverable.
      std::abort();
    }
    got += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(buf), sizeof(buf)));
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot read ", path));
  std::string content;
  char buf[4096];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return ErrnoStatus(err, absl::StrCat("cannot read ", path));
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
    if (content.size() > 64 * 1024) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(path, " is too large to be a secret"));
    }
  }
  close(fd);
  absl::string_view trimmed = absl::StripAsciiWhitespace(content);
  if (trimmed.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is empty"));
  }
  return std::string(trimmed);
}

absl::Status WritePrivateFile(const std::string& path,
                              absl::string_view content) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot create ", tmp));
  // An existing temporary file keeps its mode; make sure it is private.
  fchmod(fd, 0600);
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      unlink(tmp.c_str());
      return ErrnoStatus(err, absl::StrCat("cannot write ", tmp));
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return ErrnoStatus(err, absl::StrCat("cannot write ", tmp));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return ErrnoStatus(err, absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::Status WriteSecretFile(const std::string& path,
                             absl::string_view secret) {
  return WritePrivateFile(path, absl::StrCat(secret, "\n"));
}

absl::StatusOr<std::string> EnsureSecretFile(const std::string& path,
                                             bool* created) {
  *created = false;
  auto existing = ReadSecretFile(path);
  if (existing.ok() || !absl::IsNotFound(existing.status())) return existing;
  std::string secret = GenerateSecret();
  auto status = WriteSecretFile(path, secret);
  if (!status.ok()) return status;
  *created = true;
  return secret;
}

JoinTokenText SplitJoinToken(absl::string_view token) {
  JoinTokenText out;
  const size_t dot = token.rfind('.');
  if (dot != absl::string_view::npos &&
      absl::StartsWith(token.substr(dot + 1), "sha256:")) {
    out.secret = std::string(token.substr(0, dot));
    out.pin = std::string(token.substr(dot + 1));
  } else {
    out.secret = std::string(token);
  }
  return out;
}

std::string JoinTokenWithPin(absl::string_view secret, absl::string_view pin) {
  return pin.empty() ? std::string(secret) : absl::StrCat(secret, ".", pin);
}

std::string SecretHash(absl::string_view secret) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(secret.data(), secret.size(), digest, &len, EVP_sha256(),
                 nullptr) != 1) {
    // libcrypto's SHA-256 cannot fail short of memory corruption.
    std::abort();
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
}

std::string LoosePermissionsWarning(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "";
  if ((st.st_mode & 077) == 0) return "";
  return absl::StrCat(path,
                      " holds a secret but is accessible by group or "
                      "others (mode 0",
                      absl::string_view(std::to_string((st.st_mode >> 6) & 7) +
                                        std::to_string((st.st_mode >> 3) & 7) +
                                        std::to_string(st.st_mode & 7)),
                      "); chmod 600 it");
}

bool SecretEquals(absl::string_view a, absl::string_view b) {
  // Compare over the longer length so the time does not reveal the position
  // of the first difference; the length difference itself is not secret.
  size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

absl::Status EnsurePrivateDir(const std::string& dir) {
  std::error_code ec;
  bool made = std::filesystem::create_directories(dir, ec);
  if (!ec && made) chmod(dir.c_str(), 0700);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create directory ", dir, ": ", ec.message()));
  }
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " exists and is not a directory"));
  }
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    return ErrnoStatus(errno,
                       absl::StrCat("directory ", dir, " is not writable"));
  }
  return absl::OkStatus();
}

}  // namespace varan

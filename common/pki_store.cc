// The cluster CA on disk: LoadOrCreateAuthority (see pki.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/pki.h"
#include "common/pki_internal.h"
#include "common/secrets.h"
#include "common/status_macros.h"

namespace varan::pki {
namespace {

// Far more than any PEM certificate chain or key; refuses to slurp a file
// that cannot be one.
constexpr size_t kMaxFileSize = 1 << 20;

absl::StatusOr<bool> Exists(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  return ErrnoStatus(errno, absl::StrCat("cannot stat ", path));
}

// Closes a descriptor on every return path.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }
  // Closes now, reporting the error close() can bring (delayed writes).
  int Close() {
    const int rc = close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// The content of `path`. With `private_only`, refuses (FAILED_PRECONDITION)
// a file group or others may access: the mode is checked on the open file,
// so a chmod between a check and the read cannot slip past.
absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     bool private_only) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0)
    return ErrnoStatus(errno, absl::StrCat("cannot read ", path));
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("cannot stat ", path));
  }
  if (private_only && (st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s holds the CA's private key but is accessible by group or others "
        "(mode %04o); chmod 600 it",
        path, st.st_mode & 07777));
  }
  if (!S_ISREG(st.st_mode) || static_cast<size_t>(st.st_size) > kMaxFileSize) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a regular file of at most 1 MiB"));
  }
  std::string content;
  char buf[4096];
  while (true) {
    const ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("cannot read ", path));
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
    if (content.size() > kMaxFileSize) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " is larger than 1 MiB"));
    }
  }
  return content;
}

// A written, fsynced temporary file beside its final name, removed on
// destruction (after Publish, only the final name remains).
class TempFile {
 public:
  TempFile() = default;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (!path_.empty()) unlink(path_.c_str());
  }

  // mkstemp creates the file 0600 whatever the umask, so a key is private
  // from its first byte; `mode` (e.g. 0644 for a certificate) is applied
  // before anything is written.
  absl::Status Write(const std::string& final_path, absl::string_view content,
                     mode_t mode) {
    std::string tmpl = absl::StrCat(final_path, ".tmp.XXXXXX");
    Fd fd(mkstemp(tmpl.data()));
    if (fd.get() < 0) {
      return ErrnoStatus(
          errno, absl::StrCat("cannot create a file beside ", final_path));
    }
    path_ = tmpl;
    if (fchmod(fd.get(), mode) != 0) {
      return ErrnoStatus(errno, absl::StrCat("cannot chmod ", path_));
    }
    size_t off = 0;
    while (off < content.size()) {
      const ssize_t n =
          write(fd.get(), content.data() + off, content.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        return ErrnoStatus(errno, absl::StrCat("cannot write ", path_));
      off += static_cast<size_t>(n);
    }
    if (fsync(fd.get()) != 0 || fd.Close() != 0) {
      return ErrnoStatus(errno, absl::StrCat("cannot write ", path_));
    }
    return absl::OkStatus();
  }

  // Gives the file its final name. link(), unlike rename(), fails with
  // EEXIST rather than replace a file another process put there meanwhile.
  absl::Status Publish(const std::string& final_path) {
    if (link(path_.c_str(), final_path.c_str()) != 0) {
      const int err = errno;
      if (err == EEXIST) {
        return absl::AbortedError(
            absl::StrCat(final_path,
                         " appeared while the CA was being created (another "
                         "process creating it?); try again"));
      }
      return ErrnoStatus(err, absl::StrCat("cannot create ", final_path));
    }
    return absl::OkStatus();
  }

 private:
  std::string path_;
};

absl::Status SyncDir(const std::string& dir) {
  Fd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || fsync(fd.get()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("cannot sync directory ", dir));
  }
  return absl::OkStatus();
}

// Writes `ca` as the CA of `dir` (neither file there yet).
absl::Status Write(const std::string& dir, const std::string& cert_path,
                   const std::string& key_path, const Authority& ca) {
  TempFile key, cert;
  VARAN_RETURN_IF_ERROR(key.Write(key_path, ca.key_pem, 0600));
  VARAN_RETURN_IF_ERROR(cert.Write(cert_path, ca.cert_pem, 0644));
  // The key first: a crash between the two leaves a lone ca.key, which the
  // next start refuses loudly, never a certificate without its key.
  VARAN_RETURN_IF_ERROR(key.Publish(key_path));
  if (absl::Status s = cert.Publish(cert_path); !s.ok()) {
    unlink(key_path.c_str());  // ours: Publish just created it
    return s;
  }
  return SyncDir(dir);
}

// Parses `ca` and checks that it is a CA whose key matches; errors name
// `what`.
absl::Status Check(const Authority& ca, const std::string& what) {
  const std::string cert_what = absl::StrCat(what, " certificate");
  const std::string key_what = absl::StrCat(what, " key");
  VARAN_ASSIGN_OR_RETURN(internal::X509Ptr cert,
                         internal::ParseCertificate(ca.cert_pem, cert_what));
  VARAN_ASSIGN_OR_RETURN(internal::PkeyPtr key,
                         internal::ParsePrivateKey(ca.key_pem, key_what));
  return internal::CheckAuthority(cert.get(), key.get(), cert_what, key_what);
}

// "<what> (pin sha256:...)", or `what` alone when it has no pin.
std::string WithPin(const std::string& what, const std::string& cert_pem) {
  auto pin = AuthorityPin(cert_pem);
  return pin.ok() ? absl::StrCat(what, " (pin ", *pin, ")") : what;
}

absl::StatusOr<Authority> Load(const std::string& cert_path,
                               const std::string& key_path) {
  Authority ca;
  VARAN_ASSIGN_OR_RETURN(ca.key_pem, ReadFile(key_path, /*private_only=*/true));
  VARAN_ASSIGN_OR_RETURN(ca.cert_pem,
                         ReadFile(cert_path, /*private_only=*/false));
  VARAN_ASSIGN_OR_RETURN(internal::X509Ptr cert,
                         internal::ParseCertificate(ca.cert_pem, cert_path));
  VARAN_ASSIGN_OR_RETURN(internal::PkeyPtr key,
                         internal::ParsePrivateKey(ca.key_pem, key_path));
  VARAN_RETURN_IF_ERROR(
      internal::CheckAuthority(cert.get(), key.get(), cert_path, key_path));
  return ca;
}

}  // namespace

absl::StatusOr<StoredAuthority> LoadOrCreateAuthority(
    const std::string& dir, const std::string& common_name, absl::Time now,
    absl::Duration validity, const ShareAuthority& share) {
  VARAN_RETURN_IF_ERROR(EnsurePrivateDir(dir));
  const std::string cert_path = absl::StrCat(dir, "/ca.crt");
  const std::string key_path = absl::StrCat(dir, "/ca.key");
  VARAN_ASSIGN_OR_RETURN(const bool have_cert, Exists(cert_path));
  VARAN_ASSIGN_OR_RETURN(const bool have_key, Exists(key_path));
  StoredAuthority out;
  if (!have_cert && !have_key) {
    VARAN_ASSIGN_OR_RETURN(Authority made,
                           CreateAuthority(common_name, now, validity));
    out.authority = made;
    if (share) {
      VARAN_ASSIGN_OR_RETURN(out.authority, share(made));
      VARAN_RETURN_IF_ERROR(Check(out.authority, "the cluster's CA"));
    }
    VARAN_RETURN_IF_ERROR(Write(dir, cert_path, key_path, out.authority));
    out.created = out.authority.cert_pem == made.cert_pem;
    out.adopted = !out.created;
    return out;
  }
  if (have_cert != have_key) {
    const std::string& present = have_cert ? cert_path : key_path;
    const std::string& missing = have_cert ? key_path : cert_path;
    // Making a new CA here would silently invalidate every certificate the
    // old one issued: the operator decides.
    return absl::FailedPreconditionError(absl::StrCat(
        present, " exists but ", missing, " does not; restore it, or remove ",
        present,
        " to create a new CA (certificates the old CA issued then stop "
        "verifying)"));
  }
  VARAN_ASSIGN_OR_RETURN(out.authority, Load(cert_path, key_path));
  if (share) {
    VARAN_ASSIGN_OR_RETURN(Authority shared, share(out.authority));
    if (shared.cert_pem != out.authority.cert_pem) {
      // Taking the cluster's would orphan what this one issued; keeping it
      // would split the cluster in two: the operator decides.
      return absl::FailedPreconditionError(absl::StrCat(
          WithPin(cert_path, out.authority.cert_pem),
          " is not the CA the other replicas share",
          WithPin("", shared.cert_pem), "; move ", dir,
          " aside to take the cluster's (what this one issued then stops "
          "verifying)"));
    }
  }
  return out;
}

absl::StatusOr<bool> SeedAuthority(const std::string& from,
                                   const std::string& dir) {
  const std::string from_cert = absl::StrCat(from, "/ca.crt");
  const std::string from_key = absl::StrCat(from, "/ca.key");
  VARAN_ASSIGN_OR_RETURN(const bool have_cert, Exists(from_cert));
  VARAN_ASSIGN_OR_RETURN(const bool have_key, Exists(from_key));
  if (!have_cert && !have_key) return false;
  if (have_cert != have_key) {
    return absl::FailedPreconditionError(absl::StrCat(
        have_cert ? from_cert : from_key, " exists but ",
        have_cert ? from_key : from_cert,
        " does not: a CA needs both (varanctl ca init makes them)"));
  }
  Authority seed;
  VARAN_ASSIGN_OR_RETURN(seed.key_pem,
                         ReadFile(from_key, /*private_only=*/false));
  VARAN_ASSIGN_OR_RETURN(seed.cert_pem,
                         ReadFile(from_cert, /*private_only=*/false));
  VARAN_RETURN_IF_ERROR(Check(seed, absl::StrCat("the CA in ", from)));
  VARAN_RETURN_IF_ERROR(EnsurePrivateDir(dir));
  const std::string cert_path = absl::StrCat(dir, "/ca.crt");
  const std::string key_path = absl::StrCat(dir, "/ca.key");
  VARAN_ASSIGN_OR_RETURN(const bool had_cert, Exists(cert_path));
  VARAN_ASSIGN_OR_RETURN(const bool had_key, Exists(key_path));
  if (!had_cert && !had_key) {
    VARAN_RETURN_IF_ERROR(Write(dir, cert_path, key_path, seed));
    return true;
  }
  // A lone file: LoadOrCreateAuthority refuses it, saying what to do.
  if (!had_cert || !had_key) return false;
  VARAN_ASSIGN_OR_RETURN(const std::string mine,
                         ReadFile(cert_path, /*private_only=*/false));
  if (mine == seed.cert_pem) return true;
  return absl::FailedPreconditionError(absl::StrCat(
      WithPin(cert_path, mine), " is not the CA in ",
      WithPin(from, seed.cert_pem), "; move ", dir,
      " aside to take that one (what this one issued then stops verifying)"));
}

}  // namespace varan::pki

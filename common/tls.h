// TLS for Varan's listeners and channels: server credentials (TLS, or
// mutual TLS with a client CA), channel credentials that verify the server
// against a CA and an expected name, and certificate files re-read without
// dropping connections.
//
// Reloading. gRPC watches certificate files itself
// (FileWatcherCertificateProvider), but would pick up a certificate without
// its new key halfway through a rotation. So a daemon never points gRPC at
// the operator's files: a TlsFiles object checks them with OpenSSL (each
// parses, the key belongs to the certificate, the CA bundle holds
// certificates) and copies a good set, key and certificate in one file, into
// a private staging directory that gRPC watches (every second). Reload()
// does that again — on SIGHUP, and every few seconds from a watch thread —
// and keeps serving the last good set when the new files are bad (logging
// why). New handshakes use the new certificates; established connections
// keep theirs.
//
// Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace varan {

// A listener's TLS files (--tls-cert, --tls-key, --tls-client-ca).
struct ServerTlsFiles {
  std::string cert;       // PEM certificate chain; empty: plaintext
  std::string key;        // PEM private key
  std::string client_ca;  // PEM CA bundle; set: clients must present a
                          // certificate it signed (mutual TLS)
  bool enabled() const { return !cert.empty() || !key.empty(); }
};

// A client's TLS settings toward one server (varanctl --tls-*, periphery
// --core-tls-*, core --periphery-tls-*).
struct ClientTlsFiles {
  // PEM CA bundle the server's certificate must chain to, or "system" for
  // the system's roots; empty with no other field set: plaintext.
  std::string ca;
  // Client certificate and key, for servers that require mutual TLS.
  std::string cert;
  std::string key;
  // The name the server's certificate must carry instead of the host
  // dialed (e.g. when dialing an IP address).
  std::string server_name;
  // varanctl --ca-hash: instead of `ca`, the pin of core's cluster CA
  // (MakePinnedSecurity), or several comma-separated (both CAs while it
  // is rotated). Short-lived clients only.
  std::string ca_pin;
  // varanctl --insecure-skip-verify: TLS without checking the server at
  // all. Short-lived clients only.
  bool skip_verify = false;
  bool enabled() const {
    return !ca.empty() || !cert.empty() || !key.empty() ||
           !server_name.empty() || !ca_pin.empty() || skip_verify;
  }
};

// Checks files with OpenSSL. Errors (INVALID_ARGUMENT, NOT_FOUND,
// PERMISSION_DENIED) name the file and what is wrong with it; `what` names
// the flag ("--tls-cert").
absl::Status CheckCertificateFile(const std::string& path,
                                  const std::string& what);
absl::Status CheckKeyMatches(const std::string& key_path,
                             const std::string& cert_path,
                             const std::string& what);

// The validated, staged files of one TLS identity and/or CA for gRPC to
// watch, kept current by Reload().
class TlsFiles {
 public:
  // Checks the files and stages them in `staging_dir` (created 0700;
  // previous content replaced). `cert`/`key` may both be empty (a client
  // without a certificate), `ca` may be empty (no CA) or "system" (not
  // staged). `what` prefixes errors and logs ("--tls-cert").
  static absl::StatusOr<std::unique_ptr<TlsFiles>> Create(
      std::string cert, std::string key, std::string ca,
      std::string staging_dir, std::string what);
  ~TlsFiles();

  // Re-reads the source files; stages them when they changed and are
  // valid. OK when staged or unchanged; otherwise the error (the previous
  // files stay in use).
  absl::Status Reload();
  // Calls Reload() every `period` on a thread of its own (when the files
  // changed it logs so) until destruction.
  void Watch(absl::Duration period);

  // Staged paths for gRPC; empty when not configured.
  const std::string& identity_path() const { return identity_path_; }
  const std::string& ca_path() const { return ca_path_; }
  bool system_roots() const { return ca_ == "system"; }

 private:
  TlsFiles(std::string cert, std::string key, std::string ca,
           std::string staging_dir, std::string what);
  // Reads and validates the sources into `identity` (key + chain) and
  // `ca_pem`.
  absl::Status ReadSources(std::string* identity, std::string* ca_pem) const;

  const std::string cert_, key_, ca_, dir_, what_;
  std::string identity_path_, ca_path_;
  absl::Mutex mu_;
  std::string staged_identity_ ABSL_GUARDED_BY(mu_);
  std::string staged_ca_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread watcher_;
};

// What a TLS listener asks of its clients' certificates.
enum class ClientCertificates {
  kNone,             // asks for none
  kRequireVerified,  // requires one chaining to the staged client CA
  // Asks for one (kRequire: requires one) without checking its chain: the
  // handshake proves the client holds its key, and the handlers check what
  // it is (PeerCertificateChain, common/grpc_util.h) — the built-in CA's
  // peers, whose rules (an id, a role, a pin) gRPC cannot check.
  kRequest,
  kRequire,
};

// Server credentials for a listener: insecure when `files` is null,
// otherwise TLS with the staged identity, asking for client certificates
// as `client_certificates` says. `files` must outlive the server.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsFiles* files, ClientCertificates client_certificates);

// What a client needs to reach a server: credentials, and channel arguments
// to add (the expected server name).
struct ChannelSecurity {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::string server_name;  // empty: the host dialed
  bool tls = false;
  // Sets the server name override (when set) on `args`.
  void Apply(grpc::ChannelArguments* args) const;
};

// For a daemon's long-lived channels: TLS with the staged files of `files`
// (reloaded), or insecure when `files` is null.
ChannelSecurity MakeChannelSecurity(const TlsFiles* files,
                                    const std::string& server_name);

// For a client that knows core's cluster CA only by its pin (a join
// token's, --ca-hash): TLS accepting a server whose chain passes
// pki::VerifyPinned for `pin` and pki::kCoreName, whatever host was dialed
// (the name the pinned CA gave is checked instead). `identity` (optional:
// staged files with a client key and certificate) is presented to servers
// that ask for one; it must outlive the channels.
ChannelSecurity MakePinnedSecurity(const std::string& pin,
                                   const TlsFiles* identity = nullptr);
// The same with the pins `pins` answers at each handshake (any one will
// do): for channels that outlive a rotation of the CA (core replicas
// calling each other).
ChannelSecurity MakeLivePinnedSecurity(
    std::function<std::vector<std::string>()> pins, const TlsFiles* identity);
// The same for several pins (any one will do: both CAs of a rotation),
// with a client key and certificate chain in PEM (read once).
ChannelSecurity MakePinnedSecurity(const std::vector<std::string>& pins,
                                   const std::string& key_pem,
                                   const std::string& cert_pem);
// For core dialing a periphery of its built-in CA: TLS presenting
// `identity` (core's own certificate; must outlive the channels), accepting
// a server whose chain passes pki::VerifyIssued for `ca_pem`, `name` and
// `common_name` (the periphery's role and id) whatever address was dialed.
ChannelSecurity MakeIssuedPeerSecurity(const std::string& ca_pem,
                                       const std::string& name,
                                       const std::string& common_name,
                                       const TlsFiles* identity);
// TLS that accepts any server (varanctl --insecure-skip-verify).
ChannelSecurity MakeUnverifiedSecurity(const std::string& key_pem,
                                       const std::string& cert_pem);

// What a server presented to a probe (see MakeProbeSecurity).
struct ProbedChain {
  absl::Mutex mu;
  std::string chain_pem ABSL_GUARDED_BY(mu);
};

// TLS that refuses every server after recording the chain it presented
// into `out`: a client that has no CA or pin yet uses it to show the user
// the pin of the CA the server offers (pki::ChainAuthorityPins), to check
// against what core logged, before trusting it.
ChannelSecurity MakeProbeSecurity(std::shared_ptr<ProbedChain> out);

// For a short-lived client (varanctl, CoreClient): the files read once.
// Errors name the file.
absl::StatusOr<ChannelSecurity> MakeClientSecurity(const ClientTlsFiles& tls);

}  // namespace varan

// The building blocks of Varan's built-in cluster CA: keys, a self-signed
// authority, certificate requests, issuing, inspecting and verifying
// certificates, and the authority's pin.
//
// How they fit together ("secure by default"). Core creates a cluster CA on
// first start (LoadOrCreateAuthority) and issues itself a serving
// certificate (IssueCertificate). A periphery makes its own key
// (NewPrivateKey), which never leaves it, and sends core a request
// (CreateRequest); core answers with a short-lived certificate
// (SignRequest). Join tokens carry the CA's pin (AuthorityPin), the SHA-256
// of its public key as kubeadm's --discovery-token-ca-cert-hash, so a new
// periphery can check the CA it is handed on first contact before trusting
// it.
//
// Who decides what a certificate says. Only the issuer: SignRequest takes
// the public key from a request (after checking the request's signature,
// which proves the requester holds the key) and nothing else; names, usages
// and validity come from the CertificateProfile the caller builds. A
// requester can therefore not ask for another peer's name, a CA
// certificate, or a longer life.
//
// Formats. Everything is PEM text: keys are unencrypted PKCS#8 ("BEGIN
// PRIVATE KEY"), certificates X.509 v3 signed with ECDSA P-256 / SHA-256.
// Inputs that do not parse are INVALID_ARGUMENT, with a message that names
// the input ("CSR", "CA key", ...) and what is wrong, never key material.
//
// All functions are stateless and thread-safe. OpenSSL stays out of this
// header: pki.cc makes keys and certificates, pki_verify.cc reads and
// verifies them, pki_store.cc keeps the CA on disk.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace varan::pki {

// A new ECDSA P-256 private key as PKCS#8 PEM. P-256 because every TLS
// stack (gRPC's BoringSSL and OpenSSL, Go, browsers) handles it, and its
// keys and signatures are small and fast to make.
absl::StatusOr<std::string> NewPrivateKey();

// What a certificate issued by the CA says. Built by the issuer, never taken
// from a request.
struct CertificateProfile {
  std::string common_name;                // required
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // IPv4 or IPv6, e.g. "10.0.0.1"
  bool server_auth = false;               // extendedKeyUsage serverAuth
  bool client_auth = false;               // extendedKeyUsage clientAuth
  absl::Time not_before;
  absl::Time not_after;
};

// A certificate authority: its certificate and private key, both PEM.
// key_pem is the cluster's most sensitive secret: it never goes into a log,
// an error or a message to a peer.
struct Authority {
  std::string cert_pem;
  std::string key_pem;
};

// A new self-signed CA (a new P-256 key) named `common_name`, valid from
// one hour before `now` (for peers whose clocks lag) until now + `validity`.
// Errors: INVALID_ARGUMENT for an empty name or a validity that is not
// positive.
absl::StatusOr<Authority> CreateAuthority(const std::string& common_name,
                                          absl::Time now,
                                          absl::Duration validity);

// A PKCS#10 request (PEM "CERTIFICATE REQUEST") for the key in `key_pem`,
// signed with it. `common_name` is only a hint for logs: the issuer names
// the certificate.
absl::StatusOr<std::string> CreateRequest(const std::string& key_pem,
                                          const std::string& common_name);

// Issues a certificate for the public key in `csr_pem` as `profile` says.
// The request's signature must verify with the key it carries (a request
// whose key was swapped, or that was signed by another key, is
// INVALID_ARGUMENT); its subject, extensions and any other wishes are
// ignored. Keys weaker than 112-bit security (RSA under 2048 bits) and
// types other than EC, RSA and Ed25519 are refused (INVALID_ARGUMENT).
//
// The certificate: subject CN and subjectAltName from the profile,
// keyUsage digitalSignature (critical), extendedKeyUsage serverAuth and/or
// clientAuth, basicConstraints CA:FALSE (critical), subject and authority
// key identifiers, a random 128-bit serial.
//
// Profile errors, all INVALID_ARGUMENT: no common name; neither
// server_auth nor client_auth; not_after not after not_before; a DNS name
// that is empty or holds characters a host name cannot; an IP address that
// does not parse (named in the message). A not_after beyond the CA's own
// is FAILED_PRECONDITION: it is refused rather than clamped, because a
// certificate silently shorter than asked hides that the CA is about to
// expire and must be rotated — the caller can shorten the profile itself.
absl::StatusOr<std::string> SignRequest(const Authority& ca,
                                        const std::string& csr_pem,
                                        const CertificateProfile& profile);

// What SignRequest checks of a request before it issues anything (it
// parses, its signature verifies with its key, the key is strong enough):
// for an issuer that must refuse a bad request before it commits to
// anything else (a registration). INVALID_ARGUMENT as SignRequest's.
absl::Status CheckRequest(const std::string& csr_pem);

// As SignRequest, for a private key the caller holds itself (core's own
// serving and client certificates): no request round trip.
absl::StatusOr<std::string> IssueCertificate(const Authority& ca,
                                             const std::string& key_pem,
                                             const CertificateProfile& profile);

// What a certificate is checked for.
enum class Usage { kServerAuth, kClientAuth };

// "sha256:" + lowercase hex SHA-256 of the DER SubjectPublicKeyInfo of the
// first certificate in `ca_cert_pem`: exactly kubeadm's CA certificate
// hash, i.e.
//   openssl x509 -pubkey -noout -in ca.crt |
//     openssl pkey -pubin -outform der | sha256sum
// It pins the key, not the certificate, so a CA re-issued with the same key
// (a longer validity) keeps its pin.
absl::StatusOr<std::string> AuthorityPin(const std::string& ca_cert_pem);

// A pin as given by a user ("sha256:" and 64 hex digits, either case),
// lowercased. INVALID_ARGUMENT naming `what` ("--ca-hash") otherwise.
absl::StatusOr<std::string> ParsePin(const std::string& text,
                                     const std::string& what);
// One pin or several, comma-separated (a client trusting both CAs of a
// rotation), each as ParsePin; at least one.
absl::StatusOr<std::vector<std::string>> ParsePins(const std::string& text,
                                                   const std::string& what);

// The pins of the CA certificates (basicConstraints CA:TRUE) in a chain a
// server presented, in order: what a client shows a user who has not pinned
// the server's CA yet. INVALID_ARGUMENT when the chain does not parse.
absl::StatusOr<std::vector<std::string>> ChainAuthorityPins(
    const std::string& chain_pem);

// Checks a chain a server presented against a pinned CA, as a client that
// was given only the pin does (a join token, --ca-hash): the chain must
// hold the CA certificate whose pin is `pin`, its first certificate must be
// issued by that CA for server authentication and valid at `now`, and it
// must carry `name` as a subjectAltName DNS entry (the role the pinned CA
// gave it, see kCoreName). UNAUTHENTICATED saying which check failed (for
// a wrong CA, the pins the server offered); INVALID_ARGUMENT when the chain
// does not parse. The same checks a client's chain with `usage`
// kClientAuth (a periphery checking the core that calls it).
absl::Status VerifyPinned(const std::string& chain_pem, const std::string& pin,
                          const std::string& name, absl::Time now);
absl::Status VerifyPinned(const std::string& chain_pem, const std::string& pin,
                          const std::string& name, absl::Time now, Usage usage);
// The same with several pins (during a rotation of the cluster CA): the
// chain passes if it passes for one of them.
absl::Status VerifyPinned(const std::string& chain_pem,
                          const std::vector<std::string>& pins,
                          const std::string& name, absl::Time now, Usage usage);

// The subjectAltName DNS entry every certificate the cluster CA issues to
// a core carries, and no other certificate it issues does: a client that
// pinned the CA accepts a server only with it, so a periphery's
// certificate from the same CA cannot pass for core.
inline constexpr char kCoreName[] = "varan-core";
// The same for peripheries: their certificates carry it (and their id as
// common name), core's never do.
inline constexpr char kPeripheryName[] = "varan-periphery";
// The same for operators' client certificates (Admin.
// IssueClientCertificate): their common name names the operator token.
inline constexpr char kOperatorName[] = "varan-operator";

// What the first certificate in a PEM text says.
struct CertificateInfo {
  std::string common_name;  // subject CN; empty when there is none
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;  // canonical text ("::1")
  absl::Time not_before;
  absl::Time not_after;
  bool is_ca = false;        // basicConstraints CA:TRUE
  bool server_auth = false;  // extendedKeyUsage (or no EKU at all)
  bool client_auth = false;
  std::string serial_hex;  // lowercase, no leading zeros
};
absl::StatusOr<CertificateInfo> Inspect(const std::string& cert_pem);

// Checks a chain a peer presented against the CA that issued it (core
// checking a periphery it knows by id): Verify for `usage` at `now`, and
// the first certificate carries `name` as a subjectAltName DNS entry (its
// role, kPeripheryName) and `common_name` as subject CN (its id).
// UNAUTHENTICATED naming the failed check; INVALID_ARGUMENT when an input
// does not parse.
absl::Status VerifyIssued(const std::string& ca_pem,
                          const std::string& chain_pem, const std::string& name,
                          const std::string& common_name, Usage usage,
                          absl::Time now);

// Checks that the first certificate in `cert_pem` chains to a CA in
// `ca_bundle_pem` at time `now` and is fit for `usage` (TLS server or
// client). Certificates after the first in `cert_pem` are intermediates
// (untrusted). The bundle may hold several CAs, e.g. the old and the new
// one while the CA is rotated (they may share a name: the key identifiers
// tell them apart). Does not check host names: TLS stacks do.
//
// Errors: INVALID_ARGUMENT when an input does not parse; UNAUTHENTICATED
// when the certificate is refused, the message saying why (expired at ...,
// not valid before ..., not issued by a CA in the bundle, not for server
// authentication, ...).
absl::Status Verify(const std::string& ca_bundle_pem,
                    const std::string& cert_pem, absl::Time now, Usage usage);

// The CA kept in a directory, and whether this call created it (for the
// daemon to log "created cluster CA, pin ...") or took the cluster's.
struct StoredAuthority {
  Authority authority;
  bool created = false;
  bool adopted = false;
};

// Given the CA of one replica's directory (loaded, or just made), answers
// the CA every replica of the cluster shares: the first one any of them
// offered (core/cluster/cluster.h, Agree).
using ShareAuthority =
    std::function<absl::StatusOr<Authority>(const Authority& mine)>;

// The CA in `dir`: ca.crt (mode 0644) and ca.key (mode 0600). `dir` is
// created (0700) when missing.
//
// Neither file present: makes a CA (CreateAuthority) and writes both
// files. Each is written to a temporary file in `dir` — the key's created
// 0600, so it is never readable by others even briefly — fsynced, then
// hard-linked to its name (unlike rename, a link never replaces a CA
// another process created meanwhile) and the directory fsynced. A crash
// between the two links leaves a lone ca.key, refused below.
//
// Both present: loads them and checks them. FAILED_PRECONDITION naming the
// file when ca.key is accessible by group or others, when only one of the
// two files exists, when the key does not belong to the certificate, or
// when the certificate is not a CA. INVALID_ARGUMENT (naming the file)
// when one does not parse. An expired CA is returned as it is: Inspect
// tells the caller, who decides whether to rotate.
//
// With `share` (replicas of one cluster), the CA is the cluster's: a
// directory without one offers the CA it makes and writes the one `share`
// answers (checked like a loaded one; `adopted` when it is another
// replica's); a directory holding another CA than the cluster's is refused
// (FAILED_PRECONDITION naming both pins), since either choice would make
// certificates stop verifying.
absl::StatusOr<StoredAuthority> LoadOrCreateAuthority(
    const std::string& dir, const std::string& common_name, absl::Time now,
    absl::Duration validity, const ShareAuthority& share = nullptr);

// What core's built-in cluster CA is made with (CreateAuthority), by core
// itself or ahead of time by `varanctl ca init`.
inline constexpr char kClusterCaName[] = "varan cluster CA";
inline constexpr absl::Duration kClusterCaValidity = absl::Hours(24 * 365 * 10);

// Seeds the CA of `dir` (as LoadOrCreateAuthority keeps it) from `from`, a
// directory holding ca.crt and ca.key made ahead of time (`varanctl ca
// init`; mounted from a Kubernetes Secret, whose file modes are not
// checked here: the key is written 0600 in `dir`). Does nothing when
// `from` holds neither file, or `dir` holds a CA already and it is the
// same. FAILED_PRECONDITION naming the files and pins when `from` holds
// one file alone, when its certificate is not a CA or its key not that
// certificate's, or when `dir` holds another CA (the operator decides: the
// certificates that one issued would stop verifying); INVALID_ARGUMENT
// when a file does not parse. True when `dir` now holds `from`'s CA.
absl::StatusOr<bool> SeedAuthority(const std::string& from,
                                   const std::string& dir);

}  // namespace varan::pki

// varanctl certs issue: a client certificate from core's built-in cluster CA
// for the caller's operator token (Admin.IssueClientCertificate). The key is
// made here and never sent; core signs a request for it.
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/cli/cli.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "common/time_util.h"

namespace varan::cli {
namespace {

struct Options {
  std::string out;
  std::string lifetime;
};

int Issue(const GlobalOptions& global, const Options& opts) {
  absl::Duration lifetime = absl::ZeroDuration();
  if (!opts.lifetime.empty()) {
    auto d = ParseAge(opts.lifetime);
    if (!d.ok()) return Fail(d.status());
    lifetime = *d;
  }
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto key = pki::NewPrivateKey();
  if (!key.ok()) return Fail(key.status());
  auto csr = pki::CreateRequest(*key, "varanctl");
  if (!csr.ok()) return Fail(csr.status());
  auto issued = (*client)->IssueClientCertificate(*csr, lifetime);
  if (!issued.ok()) return Fail(issued.status());
  const std::string key_path = opts.out + ".key";
  const std::string cert_path = opts.out + ".crt";
  // The key first: a certificate without its key is of no use.
  if (absl::Status s = WritePrivateFile(key_path, *key); !s.ok()) {
    return Fail(s);
  }
  if (absl::Status s = WritePrivateFile(cert_path, issued->certificate());
      !s.ok()) {
    return Fail(s);
  }
  std::cout << "wrote " << cert_path << " and " << key_path
            << " (mode 0600), valid until "
            << absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                                FromTimestamp(issued->not_after()),
                                absl::UTCTimeZone())
            << "\nthey stand for your operator token, with its role, until "
               "it is revoked:\n  varanctl --tls-cert "
            << cert_path << " --tls-key " << key_path
            << " peripheries list\nor keep them in a context: varanctl "
               "config set-context NAME --tls-cert "
            << cert_path << " --tls-key " << key_path << "\n";
  return 0;
}

}  // namespace

void SetupCerts(CLI::App& app, GlobalOptions* global, int* exit_code) {
  CLI::App* cmd =
      app.add_subcommand("certs",
                         "Client certificates from core's built-in cluster CA, "
                         "in place of a bearer token")
          ->require_subcommand(1);
  auto opts = std::make_shared<Options>();
  CLI::App* issue = cmd->add_subcommand(
      "issue",
      "Make a key and get a certificate for it that stands for your "
      "operator token");
  issue
      ->add_option("--out", opts->out,
                   "Write PREFIX.key (a new key) and PREFIX.crt")
      ->required();
  issue
      ->add_option("--lifetime", opts->lifetime,
                   "How long it is valid, e.g. 12h, 7d (default 24h, at most "
                   "30d, never beyond the token's expiry)")
      ->check(AgeValidator());
  issue->footer(
      "The certificate carries the token's id, not its secret; revoking the "
      "token refuses the certificate at once. Run again before it expires "
      "(with the certificate itself, or the token) for a new one.\n\n"
      "Example:\n"
      "  varanctl certs issue --out ~/.varan/me\n"
      "  varanctl --tls-cert ~/.varan/me.crt --tls-key ~/.varan/me.key "
      "peripheries list");
  issue->callback(
      [global, opts, exit_code] { *exit_code = Issue(*global, *opts); });
}

}  // namespace varan::cli

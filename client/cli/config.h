// varanctl's contexts file: named contexts (core address, token file, TLS
// settings) and which one is current, kept in TOML:
//
//   current-context = "prod"
//   [contexts.prod]
//   core = "core.example:7700"
//   token-file = "/home/me/.varan/prod.token"
//   tls-ca = "/etc/varan/ca.pem"   # verify core's TLS certificate
//   tls-cert = "/home/me/.varan/me.pem"   # client certificate (mutual TLS)
//   tls-key = "/home/me/.varan/me.key"
//   tls-server-name = "core.example"      # name core's certificate carries
//   ca-hash = "sha256:..."   # or: core's cluster CA, pinned (instead of
//   tls-ca)
//
// Plain functions on values; not tied to any thread.
#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace varan::cli {

struct Context {
  std::string core;
  std::string token_file;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  std::string ca_hash;  // pin of core's cluster CA
};

struct ContextsFile {
  std::string current;  // empty: none
  std::map<std::string, Context> contexts;
};

// Reads `path`; a missing file is an empty ContextsFile. INVALID_ARGUMENT
// (naming the path) for a file that is not valid TOML or has a value of the
// wrong type; PERMISSION_DENIED when unreadable.
absl::StatusOr<ContextsFile> LoadContexts(const std::string& path);

// Writes `file` to `path` atomically (temporary file + rename) with mode
// 0600, creating its directory (0700) if missing. Errors name the path.
absl::Status SaveContexts(const std::string& path, const ContextsFile& file);

}  // namespace varan::cli

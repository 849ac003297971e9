// varan-core's command line: every flag (also read from VARAN_* variables
// and a --config file, see common/daemon.h), and the CoreConfig they make.
// Used by main() only.
#pragma once

#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"
#include "common/daemon.h"
#include "core/daemon/core_server.h"

namespace varan::core {

// The flags' values in their command-line units (seconds, days).
struct CoreFlags {
  DaemonFlags daemon;
  ClientTlsFiles periphery_tls;
  ClientTlsFiles replica_tls;
  std::string data_dir = "/var/lib/varan/core";
  std::string admin_token_file;
  std::string join_token_file;
  std::string database;
  std::string database_file;
  std::string replica_address;
  double heartbeat_seconds = 10;
  double periphery_cert_seconds = 86400;
  int heartbeat_ttl = 3;
  double restart_grace_seconds = 0;
  double retention_days = 30;
  uint64_t retention_jobs = 100000;
  uint64_t max_pending_writes = 200000;
  uint64_t output_head = 1 << 20;
  uint64_t output_tail = 3 << 20;
  // Deprecated alias: when set (non-zero), head = 1/4, tail = the rest,
  // unless --output-head / --output-tail are given.
  uint64_t capture_limit = 0;
  uint64_t live_window = 8 << 20;
  double shutdown_grace_seconds = 10;
  double keepalive_time_seconds = 30;
  double keepalive_timeout_seconds = 10;
  AdmissionOptions admission;
  std::string proxy;
  std::vector<std::string> tls_san;
  std::string ca_from;
  std::vector<std::string> health_listen;
  bool insecure_plaintext = false;
};

// Adds every flag of varan-core to `app` (including --version and the
// daemons' common ones), bound to `flags`.
void AddCoreFlags(CLI::App& app, CoreFlags* flags);

// The CoreConfig the parsed flags describe.
CoreConfig ToCoreConfig(const CoreFlags& flags);

}  // namespace varan::core

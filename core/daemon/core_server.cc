#include "core/daemon/core_server.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/daemon.h"
#include "common/log.h"
#include "common/peer_guard.h"
#include "common/proxy.h"
#include "common/secrets.h"
#include "common/server.h"
#include "core/daemon/builtin_tls.h"
#include "core/daemon/ca_rotation.h"
#include "core/daemon/core_tls.h"
#include "core/daemon/open_store.h"
#include "core/daemon/step_down.h"
#include "core/fleet/enrollment.h"
#include "core/fleet/registry.h"
#include "core/jobs/dispatcher.h"
#include "core/jobs/job_owner.h"
#include "core/link/dial_link.h"
#include "core/link/relay_service.h"
#include "core/link/replica_peers.h"
#include "core/link/tunnel_link.h"
#include "core/server/admin_service.h"
#include "core/server/auth.h"
#include "core/server/blocking_work.h"
#include "core/server/fleet_service.h"
#include "core/server/jobs_service.h"
#include "core/server/registry_service.h"
#include "core/server/replica_service.h"
#include "core/server/tokens.h"
#include "grpcpp/health_check_service_interface.h"

namespace varan::core {

// Declared in the order they are built; destroyed in reverse, so every part
// outlives the parts that point to it.
struct CoreServer::Parts {
  ~Parts() {
    {
      absl::MutexLock lock(&lapse_mu);
      cut_off.reset();  // before the peers its thread asks through
    }
    StopTicker();
  }

  // ClusterOptions::on_lapsed, on the cluster's thread (step_down.h).
  void OnLapsed(const std::vector<ReplicaInfo>& others, absl::Time renewed) {
    absl::MutexLock lock(&lapse_mu);
    if (cut_off != nullptr) cut_off->Note(others, renewed);
  }

  // Reads the bootstrap token files again (join.token rewritten with the
  // CA's current pin).
  absl::Status ReloadTokens() {
    absl::MutexLock lock(&token_files_mu);
    return LoadBootstrapTokens(token_files, tokens.get());
  }

  // Serves the health service "ready" (the readiness a load balancer or
  // Kubernetes checks): NOT_SERVING while the store is unreachable; and
  // with replicas "database": SERVING while the cluster's refreshes reach
  // the database (what a cut-off replica asks the others, step_down.h).
  void UpdateReadiness() {
    if (health.load() == nullptr) return;
    const bool now_ready = !absl::IsUnavailable(store->CheckBacklog());
    if (now_ready != ready) SetHealth(kReadyService, ready = now_ready);
    const bool now_reaching = cluster != nullptr && cluster->Reachable();
    if (cluster != nullptr && now_reaching != reaches_database) {
      SetHealth(kDatabaseService, reaches_database = now_reaching);
    }
  }
  void SetHealth(const char* service, bool serving) {
    health.load()->SetServingStatus(service, serving);
    if (health_server.server != nullptr) {
      health_server.server->GetHealthCheckService()->SetServingStatus(service,
                                                                      serving);
    }
  }

  // With replicas, every `period` until stopped: re-reads the shared fleet,
  // tokens and CA rotation, holding the jobs lease takes over the jobs of dead
  // replicas, and resolves targets waiting on peripheries held elsewhere.
  void RefreshLoop(const std::string& db, absl::Duration period) {
    bool failing = false;
    AdoptionSchedule adoption(cluster.get());
    do {
      absl::Status s = fleet->Refresh();
      if (s.ok()) s = tokens->Refresh();
      if (s.ok() && ca_rotation != nullptr)
        s = ca_rotation->Follow(absl::Now());
      // After the refresh, so the fleet says which peripheries are online.
      if (adoption.Due(absl::Now()) && s.ok()) {
        s = dispatcher->AdoptOrphans().status();
        adoption.Scanned(s, absl::Now());
      }
      // Taken-over targets waiting on peripheries held elsewhere.
      enrollment->CheckAwaited();
      if (!s.ok() && !failing) {
        spdlog::error(
            "re-reading the fleet, tokens, CA and jobs from {} failed: {}", db,
            s.message());
      }
      failing = !s.ok();
    } while (!stop_ticking.WaitForNotificationWithTimeout(period));
  }

  void StopTicker() {
    if (!ticker.joinable()) return;
    stop_ticking.Notify();
    ticker.join();
    if (refresher.joinable()) refresher.join();
  }

  // token_files.ca_pin changes when the CA rotates (under the mutex).
  absl::Mutex token_files_mu;
  BootstrapTokenFiles token_files;
  // Without --tls-cert and --insecure-plaintext: the cluster CA and core's
  // certificate from it.
  std::unique_ptr<BuiltinTls> builtin_tls;
  // With the built-in CA: the peripheries' certificates.
  std::unique_ptr<PeripheryCa> periphery_ca;
  std::unique_ptr<TlsFiles> server_tls;
  std::unique_ptr<TlsFiles> periphery_tls;
  std::unique_ptr<TlsFiles> replica_tls;
  // With replicas, once the peers exist: what OnLapsed tells.
  absl::Mutex lapse_mu;
  std::unique_ptr<CutOffWatch> cut_off ABSL_GUARDED_BY(lapse_mu);
  // Null for a core alone (no --replica-address).
  std::unique_ptr<Cluster> cluster;
  std::unique_ptr<Store> store;
  std::unique_ptr<TokenRegistry> tokens;
  std::unique_ptr<PeerGuard> guard;
  std::unique_ptr<FleetRegistry> fleet;
  // With replicas: who runs which job, and the calls to the others.
  std::unique_ptr<JobOwners> owners;
  std::unique_ptr<ReplicaPeers> peers;
  std::unique_ptr<DialLinkProvider> dial_links;
  std::unique_ptr<TunnelHub> links;
  std::unique_ptr<Dispatcher> dispatcher;
  std::unique_ptr<HandshakeAdmission> admission;
  // Liveness: notices peripheries going offline a fraction of an interval
  // after their TTL ends.
  absl::Notification stop_ticking;
  std::thread ticker;
  // With replicas: re-reads the shared fleet (FleetRegistry::Refresh).
  std::thread refresher;
  std::unique_ptr<Authenticator> auth;
  std::unique_ptr<Enrollment> enrollment;
  std::unique_ptr<RegistryService> registry_service;
  std::unique_ptr<JobForwarder> forward;
  std::unique_ptr<FleetService> fleet_service;
  std::unique_ptr<JobsService> jobs_service;
  // With the built-in CA: its rotation (Admin.RotateClusterCa).
  std::unique_ptr<CaRotation> ca_rotation;
  std::unique_ptr<AdminService> admin_service;
  std::unique_ptr<RelayService> relay_service;
  std::unique_ptr<ReplicaService> replica_service;
  // The calls that may wait on the store run here, not on gRPC's threads.
  // Ends after the server (whose shutdown waits for those calls) and
  // before what the calls use.
  std::unique_ptr<BlockingWork> blocking;
  RunningServer server;
  // --health-listen: the health service alone, in plaintext (no server
  // when not asked). Set before `health`, constant after.
  RunningServer health_server;
  // Set once serving, for UpdateReadiness (the ticker's).
  std::atomic<grpc::HealthCheckServiceInterface*> health{nullptr};
  bool ready = false;
  bool reaches_database = false;
  bool shut_down = false;
};

namespace {

// `status` with `context` before its message.
absl::Status Prefixed(const std::string& context, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(context, ": ", status.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CoreServer>> CoreServer::Start(
    const CoreConfig& config, const Clock* clock) {
  // Find out before touching any file whether the listeners can be created.
  auto listen_addrs = PrepareListeners(config.listen);
  if (!listen_addrs.ok()) return listen_addrs.status();
  std::vector<HostPort> health_addrs;
  if (!config.health_listen.empty()) {
    auto parsed = PrepareListeners(config.health_listen);
    if (!parsed.ok()) return Prefixed("--health-listen", parsed.status());
    health_addrs = *std::move(parsed);
  }
  // As many descriptors as the hard limit allows (process-wide; raising it
  // again for a second server in the process changes nothing).
  RaiseFileLimit();
  DaemonFlags flags;
  flags.allow = config.allow;
  flags.auth_failure_limit = config.auth_failure_limit;
  flags.tls = config.tls;
  flags.tls_watch_seconds = absl::ToDoubleSeconds(config.tls_watch);
  auto guard_options = GuardOptions(flags);
  if (!guard_options.ok()) return guard_options.status();
  if (absl::Status s = CheckProxyUrl(config.proxy); !s.ok()) return s;
  const std::string& dir = config.data_dir;
  if (absl::Status s = EnsurePrivateDir(dir); !s.ok()) {
    return Prefixed("--data-dir", s);
  }
  auto p = std::make_unique<Parts>();
  p->token_files = {dir, config.admin_token_file, config.join_token_file, ""};
  if (config.insecure_plaintext && config.tls.enabled()) {
    return absl::InvalidArgumentError(
        "--insecure-plaintext contradicts --tls-cert/--tls-key: give one");
  }
  // The store first: it holds the data directory (a second core on it is
  // refused before it could touch the first one's certificates).
  auto store =
      OpenStore(config, (*listen_addrs)[0].port, clock, StopFenced,
                [parts = p.get()](const std::vector<ReplicaInfo>& others,
                                  absl::Time renewed) {
                  parts->OnLapsed(others, renewed);
                });
  if (!store.ok()) return store.status();
  p->cluster = std::move(store->cluster);
  p->store = std::move(store->store);
  const std::string db = store->description;
  // (--tls-client-ca alone stays an error: PrepareServerTls names it.)
  if (!config.insecure_plaintext && !config.tls.enabled() &&
      config.tls.client_ca.empty()) {
    auto builtin = StartBuiltinTls(config, *listen_addrs, p->cluster.get());
    if (!builtin.ok()) return builtin.status();
    p->builtin_tls = *std::move(builtin);
    flags.tls.cert = p->builtin_tls->cert_path();
    flags.tls.key = p->builtin_tls->key_path();
    p->token_files.ca_pin = p->builtin_tls->pin();
    p->periphery_ca = std::make_unique<PeripheryCa>(
        p->builtin_tls->authority(), config.periphery_cert_lifetime);
  }
  if (config.insecure_plaintext) {
    spdlog::warn(
        "--insecure-plaintext: core serves plaintext; operator tokens, join "
        "tokens, periphery credentials and every command's output cross the "
        "network readable");
  }
  // Certificates are checked now, staged in <data-dir>/tls and re-read on
  // change and on Reload (common/tls.h).
  auto server_tls = PrepareServerTls(flags, dir + "/tls/server");
  if (!server_tls.ok()) return server_tls.status();
  p->server_tls = *std::move(server_tls);
  auto periphery_tls =
      PrepareClientTls(config.periphery_tls, "periphery-",
                       dir + "/tls/periphery-client", flags.tls_watch_seconds);
  if (!periphery_tls.ok()) return periphery_tls.status();
  p->periphery_tls = *std::move(periphery_tls);
  if (!config.replica_address.empty() && config.tls.enabled() &&
      !config.replica_tls.enabled()) {
    return absl::InvalidArgumentError(
        "--replica-tls-ca: replicas serving TLS call each other over TLS; "
        "give the CA their certificates chain to (and --replica-tls-cert/"
        "--replica-tls-key when they require client certificates)");
  }
  if (p->builtin_tls != nullptr && config.replica_tls.enabled()) {
    return absl::InvalidArgumentError(
        "--replica-tls-ca/--replica-tls-cert/--replica-tls-key: replicas on "
        "the built-in cluster CA verify each other by its pin; give these "
        "only with your own certificates (--tls-cert, --tls-key)");
  }
  auto replica_tls =
      PrepareClientTls(config.replica_tls, "replica-",
                       dir + "/tls/replica-client", flags.tls_watch_seconds);
  if (!replica_tls.ok()) return replica_tls.status();
  p->replica_tls = *std::move(replica_tls);

  p->tokens = std::make_unique<TokenRegistry>(clock, p->store.get());
  p->tokens->set_ca_pin(p->token_files.ca_pin);
  p->tokens->set_look_up_unknown_joins(p->cluster != nullptr);
  if (absl::Status s = p->tokens->Load(); !s.ok()) {
    return Prefixed(absl::StrCat("loading tokens from ", db), s);
  }
  if (absl::Status s = LoadBootstrapTokens(p->token_files, p->tokens.get());
      !s.ok()) {
    return s;
  }
  p->guard = std::make_unique<PeerGuard>(clock, *std::move(guard_options));
  FleetOptions fleet_options;
  fleet_options.heartbeat_interval = config.heartbeat_interval;
  fleet_options.ttl_intervals = config.heartbeat_ttl;
  fleet_options.restart_grace = config.restart_grace;
  // Core authenticates to peripheries with its certificate: their
  // credentials need not be kept, only checked.
  fleet_options.hash_credentials = p->periphery_ca != nullptr;
  p->fleet = std::make_unique<FleetRegistry>(clock, fleet_options,
                                             p->store.get(), p->cluster.get());
  if (auto loaded = p->fleet->Load(); !loaded.ok()) {
    return Prefixed(absl::StrCat("loading the fleet from ", db),
                    loaded.status());
  }
  LogProxy(config.proxy, "peripheries");
  p->dial_links = std::make_unique<DialLinkProvider>(
      config.keepalive,
      MakeChannelSecurity(p->periphery_tls.get(),
                          config.periphery_tls.server_name),
      config.proxy);
  if (p->periphery_ca != nullptr) {
    // Mutual TLS: core presents its own certificate, and the periphery's
    // must be the one the cluster CA issued to the id core dials.
    p->dial_links->set_periphery_security(
        [ca = p->periphery_ca.get(),
         identity = p->server_tls.get()](const std::string& id) {
          return MakeIssuedPeerSecurity(ca->trusted_pem(), pki::kPeripheryName,
                                        id, identity);
        });
  }
  DispatcherOptions dispatcher_options;
  dispatcher_options.default_output_head = config.output_head;
  dispatcher_options.default_output_tail = config.output_tail;
  dispatcher_options.live_window_bytes = config.live_window;
  if (p->cluster != nullptr) {
    p->owners = std::make_unique<JobOwners>(p->cluster.get());
    // Replicas of the built-in CA verify each other by its pins (both while
    // it is rotated, asked at each handshake) and present their own serving
    // certificates (client use too).
    p->peers = std::make_unique<ReplicaPeers>(
        p->cluster.get(), config.keepalive,
        p->builtin_tls != nullptr
            ? MakeLivePinnedSecurity(
                  [ca = p->periphery_ca.get()] { return ca->pins(); },
                  p->server_tls.get())
            : MakeChannelSecurity(p->replica_tls.get(),
                                  config.replica_tls.server_name));
    {
      absl::MutexLock lock(&p->lapse_mu);
      p->cut_off = std::make_unique<CutOffWatch>(
          config.replica_ttl, [peers = p->peers.get()](const std::string& a) {
            return peers->ChannelTo(a);
          });
    }
    dispatcher_options.replica_tag = p->owners->tag();
    // Until a dead replica has left the others' views, and a little more.
    dispatcher_options.redelivery_window =
        config.replica_ttl + absl::Seconds(5);
    dispatcher_options.owns_job =
        [owners = p->owners.get()](const std::string& job_id) {
          return owners->OwnsHere(job_id);
        };
    dispatcher_options.fence_creator =
        [cluster = p->cluster.get()](const std::string& tag) {
          return cluster->Fence(tag);
        };
  }
  p->links = std::make_unique<TunnelHub>(p->dial_links.get(), p->peers.get());
  // Made before the calls' services: the dispatcher reads the stored jobs
  // that heartbeats ask about on it too.
  p->blocking = std::make_unique<BlockingWork>();
  dispatcher_options.run_reads =
      [pool = p->blocking.get()](absl::AnyInvocable<void() &&> read) {
        return pool->Run(std::move(read));
      };
  p->dispatcher =
      std::make_unique<Dispatcher>(p->fleet.get(), p->links.get(),
                                   p->store.get(), clock, dispatcher_options);
  // A replica takes over the jobs of dead replicas (its own previous run
  // included) under the jobs lease instead (RefreshLoop).
  if (p->cluster == nullptr) {
    if (auto recovered = p->dispatcher->Recover(); !recovered.ok()) {
      return Prefixed(absl::StrCat("recovering jobs from ", db),
                      recovered.status());
    }
  }
  Dispatcher* dispatcher = p->dispatcher.get();
  p->fleet->SetGoneListener(
      [dispatcher](const std::string& id, const std::string& reason) {
        dispatcher->PeripheryGone(id, reason);
      });
  p->admission = std::make_unique<HandshakeAdmission>(clock, config.admission);
  const absl::Duration period = std::clamp(
      config.heartbeat_interval / 4, absl::Milliseconds(50), absl::Seconds(1));
  p->ticker = std::thread([parts = p.get(), period] {
    while (!parts->stop_ticking.WaitForNotificationWithTimeout(period)) {
      parts->fleet->Tick();
      parts->dispatcher->Tick();
      parts->admission->MaybeLog();
      if (parts->builtin_tls != nullptr) {
        auto renewed = parts->builtin_tls->RenewIfDue(absl::Now());
        if (!renewed.ok()) {
          spdlog::error("renewing core's serving certificate: {}",
                        renewed.status().message());
        } else if (*renewed) {
          // The listeners serve it from their next handshake (TlsFiles);
          // connections to peripheries present core's certificate too.
          (void)parts->server_tls->Reload();
          parts->dial_links->ResetChannels();
        }
      }
      parts->UpdateReadiness();
    }
  });
  p->auth = std::make_unique<Authenticator>(
      p->tokens.get(), p->guard.get(), p->cluster.get(), p->periphery_ca.get());
  p->enrollment = std::make_unique<Enrollment>(
      p->tokens.get(), p->fleet.get(), p->dispatcher.get(), p->guard.get(),
      p->admission.get(), p->peers.get(), p->periphery_ca.get());
  p->registry_service = std::make_unique<RegistryService>(
      p->enrollment.get(), p->links.get(), p->blocking.get());
  p->fleet_service =
      std::make_unique<FleetService>(p->auth.get(), p->fleet.get());
  if (p->cluster != nullptr) {
    p->forward = std::make_unique<JobForwarder>(p->owners.get(), p->peers.get(),
                                                p->dispatcher.get());
  }
  p->jobs_service = std::make_unique<JobsService>(
      p->auth.get(), p->dispatcher.get(), p->forward.get(), p->blocking.get());
  if (p->builtin_tls != nullptr) {
    CaRotation::Parts parts;
    parts.tls = p->builtin_tls.get();
    parts.peripheries = p->periphery_ca.get();
    parts.fleet = p->fleet.get();
    parts.cluster = p->cluster.get();
    // A step took effect: connections made from now on serve and check
    // the CAs of now, and join tokens carry the current pin.
    parts.changed = [parts_ptr = p.get()] {
      Parts& q = *parts_ptr;
      (void)q.server_tls->Reload();
      q.dial_links->ResetChannels();
      const std::string pin = q.builtin_tls->pin();
      q.tokens->set_ca_pin(pin);
      {
        absl::MutexLock lock(&q.token_files_mu);
        q.token_files.ca_pin = pin;
      }
      if (absl::Status s = q.ReloadTokens(); !s.ok()) {
        spdlog::error("rewriting join.token with the CA's pin: {}",
                      s.message());
      }
    };
    auto rotation = CaRotation::Open(dir + "/pki", std::move(parts));
    if (!rotation.ok()) {
      return Prefixed("the built-in cluster CA", rotation.status());
    }
    p->ca_rotation = *std::move(rotation);
  }
  if (p->cluster != nullptr) {
    p->refresher =
        std::thread([parts = p.get(), db, period = config.fleet_refresh] {
          parts->RefreshLoop(db, period);
        });
  }
  p->admin_service = std::make_unique<AdminService>(
      p->auth.get(), p->fleet.get(), p->tokens.get(), clock->Now(),
      p->admission.get(), p->ca_rotation.get(), p->periphery_ca.get(),
      p->blocking.get());

  std::vector<grpc::Service*> services = {
      p->registry_service.get(), p->fleet_service.get(), p->jobs_service.get(),
      p->admin_service.get()};
  if (p->cluster != nullptr) {
    p->relay_service =
        std::make_unique<RelayService>(p->cluster.get(), p->links.get());
    p->replica_service = std::make_unique<ReplicaService>(
        p->cluster.get(), p->dispatcher.get(), p->peers.get());
    services.push_back(p->relay_service.get());
    services.push_back(p->replica_service.get());
  }
  auto server = StartServer(
      *listen_addrs, services, ServerKeepaliveArgs(config.keepalive),
      MakeServerCredentials(p->server_tls.get(),
                            ClientCertificatesAsked(config)),
      config.listener);
  if (!server.ok()) return server.status();
  p->server = *std::move(server);
  grpc::HealthCheckServiceInterface* health =
      p->server.server->GetHealthCheckService();
  p->ready = !absl::IsUnavailable(p->store->CheckBacklog());
  health->SetServingStatus(kReadyService, p->ready);
  // Until the ticker's first look (UpdateReadiness).
  if (p->cluster != nullptr) health->SetServingStatus(kDatabaseService, false);
  if (!health_addrs.empty()) {
    // No service of its own: gRPC's health service (and reflection) alone.
    auto health_server =
        StartServer(health_addrs, {}, {}, nullptr, config.listener);
    if (!health_server.ok()) {
      return Prefixed("--health-listen", health_server.status());
    }
    p->health_server = *std::move(health_server);
    p->health_server.server->GetHealthCheckService()->SetServingStatus(
        kReadyService, p->ready);
    if (p->cluster != nullptr) {
      p->health_server.server->GetHealthCheckService()->SetServingStatus(
          kDatabaseService, false);
    }
    std::vector<std::string> bound;
    for (const HostPort& hp : p->health_server.addresses) {
      bound.push_back(FormatHostPort(hp));
    }
    spdlog::info("health checks alone, in plaintext, on {}",
                 absl::StrJoin(bound, ", "));
  }
  p->health.store(health);  // the ticker takes over
  LogListening("varan-core", p->server,
               "tokens and output cross the network unencrypted", flags.tls);
  return std::unique_ptr<CoreServer>(new CoreServer(std::move(p)));
}

CoreServer::CoreServer(std::unique_ptr<Parts> parts)
    : parts_(std::move(parts)) {}

CoreServer::~CoreServer() { Shutdown(absl::ZeroDuration()); }

void CoreServer::Reload() {
  // Rotated bootstrap token files take effect; a file that became
  // unreadable keeps the tokens read before.
  if (absl::Status s = parts_->ReloadTokens(); !s.ok()) {
    spdlog::error("reloading bootstrap tokens: {}; keeping the old ones",
                  s.message());
  }
  // New certificates take effect for new connections (errors are logged
  // and the previous ones kept).
  for (TlsFiles* tls : {parts_->server_tls.get(), parts_->periphery_tls.get(),
                        parts_->replica_tls.get()}) {
    if (tls != nullptr) (void)tls->Reload();
  }
}

void CoreServer::Shutdown(absl::Duration grace) {
  Parts& p = *parts_;
  if (p.shut_down) return;
  p.shut_down = true;
  // Stop accepting; running calls (watchers, exec streams) get the grace
  // period, then are canceled. Calls to peripheries are canceled too, which
  // stops their commands.
  // Probes on the health port see NOT_SERVING from now on (the main
  // server's health service turns so by itself).
  if (p.health_server.server != nullptr) {
    p.health_server.server->GetHealthCheckService()->Shutdown();
  }
  p.server.Shutdown(absl::Now() + grace);
  spdlog::debug("server shut down");
  p.dispatcher->Shutdown(absl::Seconds(5));
  spdlog::debug("calls to peripheries ended");
  p.server.server->Wait();
  p.health_server.Shutdown(absl::Now());
  p.StopTicker();
  if (absl::Status s = p.store->Sync(); !s.ok()) {
    spdlog::error("the last writes to {}/core.db failed: {}",
                  p.token_files.data_dir, s.message());
  }
  spdlog::info("stopped");
}

const std::vector<HostPort>& CoreServer::addresses() const {
  return parts_->server.addresses;
}

std::string CoreServer::admin_token_path() const {
  return parts_->token_files.data_dir + "/admin.token";
}

std::string CoreServer::join_token_path() const {
  return parts_->token_files.data_dir + "/join.token";
}

}  // namespace varan::core

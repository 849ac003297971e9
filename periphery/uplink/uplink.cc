#include "periphery/uplink/uplink.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/secrets.h"
#include "common/time_util.h"
#include "periphery/host/facts.h"
#include "varan/version.h"

namespace varan::periphery {
namespace {

// How long a certificate written for the listener takes at most to be
// served (common/tls.cc: gRPC re-reads staged files every second).
constexpr absl::Duration kListenerPickup = absl::Milliseconds(1200);

constexpr char kCredentialFile[] = "credential";
constexpr char kIdFile[] = "periphery_id";
// A retry-after hint from core is honoured up to this long (a larger one is
// taken as this).
constexpr absl::Duration kMaxRetryAfter = absl::Minutes(10);

}  // namespace

absl::StatusOr<std::string> LocalAddressToward(const HostPort& core) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(core.port);
  int rc = getaddrinfo(core.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve core address ",
                                               FormatHostPort(core), ": ",
                                               gai_strerror(rc)));
  }
  std::string out;
  int last_err = 0;
  for (addrinfo* ai = res; ai != nullptr && out.empty(); ai = ai->ai_next) {
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_err = errno;
      continue;
    }
    // connect() on a UDP socket sends nothing; it only picks the route.
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      sockaddr_storage local{};
      socklen_t len = sizeof(local);
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
        char host[NI_MAXHOST];
        if (getnameinfo(reinterpret_cast<sockaddr*>(&local), len, host,
                        sizeof(host), nullptr, 0, NI_NUMERICHOST) == 0) {
          out = host;
        }
      }
    } else {
      last_err = errno;
    }
    close(fd);
  }
  freeaddrinfo(res);
  if (out.empty()) {
    return absl::UnavailableError(absl::StrCat("no route to core at ",
                                               FormatHostPort(core), ": ",
                                               std::strerror(last_err)));
  }
  return out;
}

absl::StatusOr<std::string> AdvertiseAddress(
    const std::string& flag, const HostPort& bound,
    const std::vector<HostPort>& cores) {
  if (!flag.empty()) {
    auto adv = ParseDialAddress(flag);
    if (!adv.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--advertise: ", adv.status().message()));
    }
    return FormatHostPort(*adv);
  }
  std::string host = bound.host;
  if (IsWildcardHost(host)) {
    // A core whose name does not resolve now is passed over: the periphery
    // can still work through the others.
    absl::StatusOr<std::string> local =
        absl::InvalidArgumentError("no core address");
    for (const HostPort& core : cores) {
      local = LocalAddressToward(core);
      if (local.ok()) break;
    }
    if (!local.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "cannot work out an address to advertise: ", local.status().message(),
          " (set --advertise)"));
    }
    host = *local;
  }
  return FormatHostPort({host, bound.port});
}

bool HasSavedRegistration(const std::string& state_dir) {
  return ReadSecretFile(absl::StrCat(state_dir, "/", kCredentialFile)).ok() &&
         ReadSecretFile(absl::StrCat(state_dir, "/", kIdFile)).ok();
}

Uplink::Uplink(UplinkOptions options, CoreConnector connect,
               CredentialHolder* credential, HostSnapshot* host,
               Executor* executor, const Clock* clock)
    : options_(std::move(options)),
      connect_(std::move(connect)),
      credential_(credential),
      host_(host),
      executor_(executor),
      clock_(clock) {}

Uplink::~Uplink() { Stop(); }

void Uplink::Start() {
  const std::string dir = options_.state_dir;
  auto credential = ReadSecretFile(absl::StrCat(dir, "/", kCredentialFile));
  auto id = ReadSecretFile(absl::StrCat(dir, "/", kIdFile));
  if (credential.ok() && id.ok()) {
    credential_->Set(*credential);
    periphery_id_ = *id;
    spdlog::info("resuming as periphery {} (state in {})", periphery_id_, dir);
  }
  thread_ = std::thread([this] { Run(); });
}

void Uplink::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

CoreConnection& Uplink::Core() {
  if (core_ == nullptr) core_ = connect_(options_.cores[current_]);
  return *core_;
}

std::string Uplink::CurrentCore() const {
  return FormatHostPort(options_.cores[current_]);
}

std::string Uplink::AdvertiseToCurrentCore() const {
  // The address chosen at start is the one toward the first core.
  if (!options_.advertise_toward_core || current_ == 0) {
    return options_.advertise_address;
  }
  auto advertised = ParseDialAddress(options_.advertise_address);
  auto local = LocalAddressToward(options_.cores[current_]);
  if (!advertised.ok() || !local.ok()) {
    spdlog::debug("advertising {} to core at {}: {}",
                  options_.advertise_address, CurrentCore(),
                  local.ok() ? advertised.status().ToString()
                             : local.status().ToString());
    return options_.advertise_address;
  }
  return FormatHostPort({*local, advertised->port});
}

bool Uplink::SleepFor(absl::Duration d) {
  return !clock_->WaitForNotification(stop_, d);
}

void Uplink::SaveRegistration(const std::string& id,
                              const std::string& credential) {
  const std::string dir = options_.state_dir;
  absl::Status s =
      WriteSecretFile(absl::StrCat(dir, "/", kCredentialFile), credential);
  if (s.ok()) s = WriteSecretFile(absl::StrCat(dir, "/", kIdFile), id);
  if (!s.ok()) {
    // Still usable for this run; it will register again after a restart.
    spdlog::error("cannot save registration: {}", s.message());
  }
  credential_->Set(credential);
  periphery_id_ = id;
}

varan::v1::RegisterRequest Uplink::MakeRegisterRequest() const {
  varan::v1::RegisterRequest req;
  req.set_name(options_.name);
  for (const auto& [k, v] : options_.labels) (*req.mutable_labels())[k] = v;
  req.set_advertise_address(AdvertiseToCurrentCore());
  *req.mutable_facts() = host_->facts();
  req.set_version(kVersion);
  if (options_.certificates != nullptr) {
    auto csr = options_.certificates->Request();
    if (csr.ok()) {
      req.set_csr(*std::move(csr));
    } else {
      // Core refuses the registration, saying so.
      spdlog::error("cannot make a certificate request: {}",
                    csr.status().message());
    }
  }
  return req;
}

bool Uplink::InstallCertificate(const std::string& chain_pem) {
  if (options_.certificates == nullptr) return false;
  if (chain_pem.empty()) {
    spdlog::warn(
        "core issued no certificate (it has no built-in CA); going on "
        "without one");
    return false;
  }
  if (absl::Status s = options_.certificates->Install(chain_pem); !s.ok()) {
    spdlog::error("cannot keep the certificate core issued: {}", s.message());
    return false;
  }
  return true;
}

bool Uplink::MaybeRenewCertificate() {
  if (options_.certificates == nullptr) return false;
  const absl::Time now = clock_->Now();
  if (now < next_renewal_try_ ||
      !(renewal_requested_ || options_.certificates->RenewalDue(now))) {
    return false;
  }
  varan::v1::RenewCertificateRequest request;
  request.set_periphery_id(periphery_id_);
  auto csr = options_.certificates->Request();
  absl::Status status = csr.status();
  if (csr.ok()) {
    request.set_csr(*std::move(csr));
    auto answer = Core().RenewCertificate(request, credential_->Get(),
                                          options_.rpc_timeout);
    status = answer.status();
    if (answer.ok()) {
      status = options_.certificates->Install(answer->certificate());
    }
  }
  if (!status.ok()) {
    spdlog::warn(
        "renewing this periphery's certificate failed: {} (trying "
        "again in a minute)",
        status.ToString());
    next_renewal_try_ = now + absl::Minutes(1);
    return false;
  }
  spdlog::info("core renewed this periphery's certificate{}",
               renewal_requested_ ? " (core asked for it)" : "");
  renewal_requested_ = false;
  return true;
}

void Uplink::AbsorbTrust(const varan::v1::HeartbeatResponse& answer) {
  if (answer.ca_pins_size() > 0 && options_.core_pins != nullptr) {
    auto changed = options_.core_pins->Replace(std::vector<std::string>(
        answer.ca_pins().begin(), answer.ca_pins().end()));
    if (!changed.ok()) {
      spdlog::error("cannot take the CA pins core sent: {}",
                    changed.status().message());
    } else if (*changed) {
      spdlog::info(
          "core's cluster CA pins are now {} (new connections "
          "trust these)",
          absl::StrJoin(options_.core_pins->Get(), ", "));
    }
  }
  if (answer.renew_certificate() && options_.certificates != nullptr &&
      !renewal_requested_) {
    renewal_requested_ = true;
    next_renewal_try_ = absl::InfinitePast();
  }
}

absl::Status Uplink::NeedJoinToken() const {
  if (!options_.join_token.empty()) return absl::OkStatus();
  return absl::UnauthenticatedError(
      "core does not accept the saved credential any more and no join token "
      "was given (--join-token-file)");
}

absl::Status Uplink::Register() {
  if (absl::Status s = NeedJoinToken(); !s.ok()) return s;
  const varan::v1::RegisterRequest request = MakeRegisterRequest();
  auto resp =
      Core().Register(request, options_.join_token, options_.rpc_timeout);
  if (!resp.ok()) return resp.status();
  SaveRegistration(resp->periphery_id(), resp->credential());
  // Heartbeats present the certificate: a connection made after it.
  if (InstallCertificate(resp->certificate())) {
    core_.reset();
    // Core dials this periphery once the first heartbeat confirmed the
    // registration, checking that it serves that certificate: give the
    // listener (gRPC re-reads its files every second) time to take it up.
    // Real time, as gRPC's.
    if (stop_.WaitForNotificationWithTimeout(kListenerPickup)) {
      return absl::CancelledError("stopped");
    }
  }
  if (resp->has_heartbeat_interval()) {
    interval_ = FromDuration(resp->heartbeat_interval());
  }
  spdlog::info("registered with core at {} as {} (id {}), advertising {}",
               CurrentCore(), options_.name, periphery_id_,
               request.advertise_address());
  return absl::OkStatus();
}

varan::v1::HeartbeatRequest Uplink::MakeHeartbeat() {
  varan::v1::HeartbeatRequest req;
  req.set_periphery_id(periphery_id_);
  *req.mutable_stats() = host_->Sample();
  req.mutable_stats()->set_running_executions(executor_->running());
  for (auto& r : executor_->Report()) *req.add_executions() = std::move(r);
  if (options_.core_pins != nullptr) {
    for (std::string& pin : options_.core_pins->Get()) {
      req.add_ca_pins(std::move(pin));
    }
  }
  return req;
}

absl::Status Uplink::Heartbeat() {
  // Dial mode: where core should dial now, in case it changed since the
  // registration (a tunnel's heartbeats go on the tunnel, without it).
  varan::v1::HeartbeatRequest req = MakeHeartbeat();
  req.set_advertise_address(AdvertiseToCurrentCore());
  auto resp = Core().Heartbeat(req, credential_->Get(), options_.rpc_timeout);
  if (!resp.ok()) return resp.status();
  if (resp->has_heartbeat_interval()) {
    interval_ = FromDuration(resp->heartbeat_interval());
  }
  executor_->Acknowledge(std::vector<std::string>(resp->acknowledged().begin(),
                                                  resp->acknowledged().end()));
  CancelForCore(executor_, resp->cancel());
  executor_->ResendTails(std::vector<std::string>(
      resp->resend_with_tails().begin(), resp->resend_with_tails().end()));
  AbsorbTrust(*resp);
  // Presented from the next connection on.
  if (MaybeRenewCertificate()) core_.reset();
  return absl::OkStatus();
}

void Uplink::Connected(absl::Duration* backoff, bool* failing) {
  *failing = false;
  *backoff = options_.min_backoff;
  unreachable_in_row_ = 0;
  all_failed_ = false;
}

bool Uplink::Retry(const absl::Status& status, bool broke,
                   absl::Duration* backoff, bool* failing) {
  const bool unreachable = !RetryAfter(status).has_value() &&
                           (broke || absl::IsUnavailable(status) ||
                            absl::IsDeadlineExceeded(status));
  const size_t cores = options_.cores.size();
  if (!unreachable || cores == 1) {
    // Core answered (a refusal, a hint): stay with it.
    if (!unreachable) unreachable_in_row_ = 0;
    return Backoff(status, backoff, failing);
  }
  const std::string from = CurrentCore();
  core_.reset();
  current_ = (current_ + 1) % cores;
  // Logged at info until every core has failed since the last success;
  // after that the pass is logged once, by Backoff.
  if (!all_failed_) {
    spdlog::info("core at {} is unreachable ({}); moving to core at {}", from,
                 status.ToString(), CurrentCore());
  } else {
    spdlog::debug("core at {} is unreachable ({}); moving to core at {}", from,
                  status.ToString(), CurrentCore());
  }
  if (++unreachable_in_row_ < cores) return !stop_.HasBeenNotified();
  // Every core failed in a row: back off before the next pass.
  unreachable_in_row_ = 0;
  all_failed_ = true;
  return Backoff(status, backoff, failing);
}

bool Uplink::Backoff(const absl::Status& status, absl::Duration* backoff,
                     bool* failing) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  if (auto hint = RetryAfter(status)) {
    // Core is shedding load and said when to come back: wait at least that
    // (a little more, jittered, so those given the same hint spread out),
    // then go on with our own backoff where it was.
    std::uniform_real_distribution<double> jitter(1.0, 1.25);
    const absl::Duration wait = std::min(*hint, kMaxRetryAfter) * jitter(rng);
    spdlog::warn(
        "core at {} is shedding load: waiting {} before trying again (core "
        "asked for at least {})",
        CurrentCore(), absl::FormatDuration(wait), absl::FormatDuration(*hint));
    *failing = true;
    return SleepFor(wait);
  }
  if (absl::IsUnauthenticated(status) || absl::IsInvalidArgument(status) ||
      absl::IsPermissionDenied(status) || absl::IsAlreadyExists(status)) {
    // Core refused us: retrying fast will not help, but core's
    // configuration may change, so keep trying slowly and loudly.
    spdlog::error("core at {} refused registration: {}", CurrentCore(),
                  status.ToString());
    *failing = true;
    return SleepFor(options_.max_backoff);
  }
  // With several cores, every one of them has just failed.
  std::string where = absl::StrCat("core at ", CurrentCore());
  if (options_.cores.size() > 1) {
    std::vector<std::string> all;
    for (const HostPort& core : options_.cores) {
      all.push_back(FormatHostPort(core));
    }
    where = absl::StrCat("any core (", absl::StrJoin(all, ", "), ")");
  }
  if (!*failing) {
    spdlog::warn("cannot reach {}: {} (retrying)", where, status.ToString());
  } else {
    spdlog::debug("still cannot reach {}: {}", where, status.ToString());
  }
  *failing = true;
  // Jitter in [0.5, 1.5) of the backoff so a fleet does not retry in step.
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  absl::Duration wait = *backoff * jitter(rng);
  *backoff = std::min(*backoff * 2, options_.max_backoff);
  // Connected, so core itself answered the failure: a plain wait. Otherwise
  // the wait ends as soon as the connection to core is up again.
  CoreConnection& core = Core();
  if (core.Up()) return SleepFor(wait);
  core.AwaitUp(wait, stop_);
  return !stop_.HasBeenNotified();
}

absl::Status Uplink::RunTunnel(bool* opened, bool* reconnect) {
  *opened = false;
  *reconnect = false;
  varan::v1::TunnelHello hello;
  const bool registering = periphery_id_.empty();
  if (registering) {
    if (absl::Status s = NeedJoinToken(); !s.ok()) return s;
    *hello.mutable_register_() = MakeRegisterRequest();
  } else {
    hello.set_periphery_id(periphery_id_);
    // Back after longer than its certificate's life: renewed first (core
    // takes an expired one for that alone), so that the tunnel presents a
    // valid one.
    if (MaybeRenewCertificate()) core_.reset();
  }
  std::unique_ptr<CoreTunnel> session = Core().OpenTunnel(
      executor_, registering ? options_.join_token : credential_->Get(),
      std::move(hello));
  absl::Status result;
  auto answer = session->WaitOpened(options_.rpc_timeout);
  if (!answer.ok()) {
    result = answer.status();
  } else {
    *opened = true;
    if (registering) {
      SaveRegistration(answer->periphery_id(), answer->credential());
      spdlog::info("registered with core at {} as {} (id {}) over a tunnel",
                   CurrentCore(), options_.name, periphery_id_);
      if (InstallCertificate(answer->certificate())) {
        // This tunnel presented no certificate of core's CA yet: open the
        // one that will carry the work with it.
        spdlog::info(
            "opening the tunnel again with the certificate core "
            "issued");
        *reconnect = true;
        session->Cancel();
        while (
            !clock_->WaitForNotification(session->done(), absl::Seconds(10))) {
        }
        core_.reset();
        return absl::OkStatus();
      }
    } else {
      spdlog::info("tunnel to core at {} open", CurrentCore());
    }
    // Heartbeat at once (that confirms a registration), then every
    // interval; core that stops answering for three intervals is given up.
    while (true) {
      session->SendHeartbeat(MakeHeartbeat());
      const absl::Duration interval = session->interval() > absl::ZeroDuration()
                                          ? session->interval()
                                          : interval_;
      // Wakes for the stream's end at once, and for Stop within 100 ms.
      const absl::Time next = clock_->Now() + interval;
      bool done = false;
      while (!done && !stop_.HasBeenNotified() && clock_->Now() < next) {
        done = clock_->WaitForNotification(
            session->done(),
            std::min(next - clock_->Now(), absl::Milliseconds(100)));
      }
      if (done) {
        result = session->status();
        break;
      }
      if (stop_.HasBeenNotified()) break;
      if (auto trust = session->TakeTrustAnswer(); trust.has_value()) {
        AbsorbTrust(*trust);
      }
      // Presented by the next tunnel: this one was authenticated when it
      // opened, and goes on.
      (void)MaybeRenewCertificate();
      if (clock_->Now() - session->last_answer() >
          3 * interval + options_.rpc_timeout) {
        result = absl::UnavailableError(
            "core stopped answering heartbeats on the tunnel");
        break;
      }
    }
  }
  session->Cancel();
  while (!clock_->WaitForNotification(session->done(), absl::Seconds(10))) {
    spdlog::warn("the tunnel to core is slow to close");
  }
  return result;
}

void Uplink::Run() {
  absl::Duration backoff = options_.min_backoff;
  bool failing = false;
  while (!stop_.HasBeenNotified()) {
    if (options_.tunnel) {
      bool opened = false;
      bool reconnect = false;
      absl::Status status = RunTunnel(&opened, &reconnect);
      if (stop_.HasBeenNotified()) return;
      if (opened) Connected(&backoff, &failing);
      if (reconnect) continue;
      if (!periphery_id_.empty() && !opened &&
          (absl::IsNotFound(status) || absl::IsUnauthenticated(status))) {
        spdlog::info(
            "core does not know this periphery any more ({}); "
            "registering again",
            status.message());
        periphery_id_.clear();
        continue;
      }
      if (opened) {
        spdlog::warn("tunnel to core at {} closed: {} (reconnecting)",
                     CurrentCore(), status.ToString());
        failing = true;
      }
      if (!Retry(status, /*broke=*/opened, &backoff, &failing)) return;
      continue;
    }
    absl::Status status;
    bool registered = false;
    if (periphery_id_.empty()) {
      status = Register();
      registered = status.ok();
    } else {
      // A certificate that expired while the periphery was off is renewed
      // before the heartbeat that would present it, and before core, told
      // by that heartbeat that the periphery is back, dials the listener:
      // it must serve the new one by then.
      if (MaybeRenewCertificate()) {
        core_.reset();
        if (stop_.WaitForNotificationWithTimeout(kListenerPickup)) return;
      }
      status = Heartbeat();
      if (absl::IsNotFound(status) || absl::IsUnauthenticated(status)) {
        spdlog::info(
            "core does not know this periphery any more ({}); "
            "registering again",
            status.message());
        periphery_id_.clear();
        status = Register();
        registered = status.ok();
      }
    }
    if (status.ok()) {
      if (failing) {
        spdlog::info("connected to core at {} again", CurrentCore());
      } else if (unreachable_in_row_ > 0) {
        // Moved from another core without waiting.
        spdlog::info("connected to core at {}", CurrentCore());
      }
      Connected(&backoff, &failing);
      // Right after registering, heartbeat at once: core counts a periphery
      // online (and dispatches to it) only once it has proved it holds the
      // new credential, which is also what the Agent service checks.
      if (!registered && !SleepFor(interval_)) return;
      continue;
    }
    if (!Retry(status, /*broke=*/false, &backoff, &failing)) return;
  }
}

}  // namespace varan::periphery

#include "tests/integration/daemons.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/secrets.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

extern char** environ;

namespace varan::testing {
namespace {

std::vector<std::string> MergedEnv(
    const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : extra) {
    if (v.empty()) {
      env.erase(k);  // an empty value removes the variable
    } else {
      env[k] = v;
    }
  }
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

// `file_limit` (when not 0) becomes the child's RLIMIT_NOFILE, soft and
// hard.
pid_t Spawn(const std::vector<std::string>& argv,
            const std::map<std::string, std::string>& env,
            const std::string& out_path, const std::string& err_path,
            uint64_t file_limit = 0) {
  std::vector<std::string> env_strings = MergedEnv(env);
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env_strings)
    cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  // Opened before fork: only async-signal-safe calls happen in the child.
  int in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int out_fd =
      open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err_fd = err_path == out_path
                   ? out_fd
                   : open(err_path.c_str(),
                          O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (in_fd < 0 || out_fd < 0 || err_fd < 0) {
    ADD_FAILURE() << "cannot open output files for " << argv[0];
    return -1;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // If the test process dies (a crash, an abort), its daemons die too.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(in_fd, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    if (file_limit != 0) {
      const rlimit lim{file_limit, file_limit};
      if (setrlimit(RLIMIT_NOFILE, &lim) != 0) _exit(126);
    }
    execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  close(in_fd);
  close(out_fd);
  if (err_fd != out_fd) close(err_fd);
  if (pid < 0) {
    ADD_FAILURE() << "cannot start " << argv[0] << ": " << std::strerror(errno);
    return -1;
  }
  return pid;
}

// Waits for `pid` up to `timeout`; returns its exit code (128+N for signal
// N) or -1.
int WaitPid(pid_t pid, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (r < 0) return -1;
    if (absl::Now() >= deadline) return -1;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

}  // namespace

bool Healthy(const std::string& address, const ClientTlsFiles& tls) {
  auto security = MakeClientSecurity(tls);
  if (!security.ok()) return false;
  grpc::ChannelArguments args;
  security->Apply(&args);
  auto channel =
      grpc::CreateCustomChannel(address, security->credentials, args);
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = stub->Check(&ctx, req, &resp);
  return s.ok() &&
         resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

std::vector<std::string> ReflectionServices(const std::string& address,
                                            const ClientTlsFiles& tls) {
  // Speaks grpc.reflection.v1alpha without generated code (generating it here
  // would clash with the copy inside libgrpc++_reflection): the request
  // {list_services: ""} is field 7, and the answer is parsed generically.
  auto channel = SecureChannel(address, tls);
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(
      &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      &cq);
  void* tag = nullptr;
  bool ok = false;
  auto step = [&](intptr_t id) {
    return cq.Next(&tag, &ok) && tag == reinterpret_cast<void*>(id) && ok;
  };
  std::vector<std::string> names;
  std::string bytes;
  call->StartCall(reinterpret_cast<void*>(1));
  if (step(1)) {
    grpc::Slice slice(std::string("\x3a\x00", 2));
    grpc::ByteBuffer request(&slice, 1);
    call->Write(request, reinterpret_cast<void*>(2));
    if (step(2)) {
      call->WritesDone(reinterpret_cast<void*>(3));
      grpc::ByteBuffer response;
      if (step(3)) {
        call->Read(&response, reinterpret_cast<void*>(4));
        if (step(4)) {
          std::vector<grpc::Slice> slices;
          (void)response.Dump(&slices);
          for (const auto& sl : slices) {
            bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
          }
        }
      }
    }
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(5)) {
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  google::protobuf::UnknownFieldSet top;
  if (!top.ParseFromString(bytes)) return names;
  for (int i = 0; i < top.field_count(); ++i) {
    if (top.field(i).number() != 6) continue;  // list_services_response
    google::protobuf::UnknownFieldSet list;
    if (!list.ParseFromString(top.field(i).length_delimited())) continue;
    for (int j = 0; j < list.field_count(); ++j) {
      if (list.field(j).number() != 1) continue;  // service
      google::protobuf::UnknownFieldSet service;
      if (!service.ParseFromString(list.field(j).length_delimited())) continue;
      for (int k = 0; k < service.field_count(); ++k) {
        if (service.field(k).number() == 1) {
          names.push_back(service.field(k).length_delimited());
        }
      }
    }
  }
  return names;
}

std::string BinPath(const std::string& name) {
  return absl::StrCat(VARAN_BIN_DIR, "/", name);
}

uint16_t FreePort() {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_addr = in6addr_any;
  int zero = 0;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    ADD_FAILURE() << "bind [::]:0: " << std::strerror(errno);
  }
  socklen_t len = sizeof(sa);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  close(fd);
  return ntohs(sa.sin6_port);
}

TempDir::TempDir(const std::string& base) {
  const char* env = getenv("TMPDIR");
  std::string tmpl =
      absl::StrCat(!base.empty() ? base : (env != nullptr ? env : "/tmp"),
                   "/varan-test-XXXXXX");
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Trimmed(const std::string& s) {
  return std::string(absl::StripAsciiWhitespace(s));
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

RunResult RunProgram(const std::vector<std::string>& argv,
                     const std::map<std::string, std::string>& env,
                     absl::Duration timeout) {
  TempDir tmp;
  RunResult result;
  pid_t pid = Spawn(argv, env, tmp.File("out"), tmp.File("err"));
  if (pid < 0) return result;
  result.exit_code = WaitPid(pid, timeout);
  if (result.exit_code == -1) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  result.out = ReadFile(tmp.File("out"));
  result.err = ReadFile(tmp.File("err"));
  return result;
}

long RssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

Daemon::Daemon(std::vector<std::string> argv, std::string log_path,
               std::map<std::string, std::string> env)
    : argv_(std::move(argv)),
      log_path_(std::move(log_path)),
      env_(std::move(env)) {}

Daemon::~Daemon() {
  if (pid_ > 0 && exit_code_ == -1) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void Daemon::Start() {
  pid_ = Spawn(argv_, env_, log_path_, log_path_, file_limit_);
  exit_code_ = -1;
}

bool Daemon::Running() {
  if (pid_ <= 0 || exit_code_ != -1) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) {
    exit_code_ =
        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return false;
}

int Daemon::Wait(absl::Duration timeout) {
  if (exit_code_ != -1 || pid_ <= 0) return exit_code_;
  exit_code_ = WaitPid(pid_, timeout);
  return exit_code_;
}

int Daemon::Stop(int sig, absl::Duration timeout) {
  if (!Running()) return exit_code_;
  kill(pid_, sig);
  return Wait(timeout);
}

TestFleet::TestFleet(std::vector<std::string> extra_core_args)
    : core_port_(0), extra_core_args_(std::move(extra_core_args)) {}

TestFleet::~TestFleet() {
  // An idle gRPC client answers the server's GOAWAY only when its backup
  // poller runs (every 5 s by default), which would stretch every shutdown.
  client_.reset();
  for (auto& p : peripheries_) {
    p->Stop();
    if (getenv("VARAN_TEST_SHOW_LOGS")) fprintf(stderr, "%s", p->Log().c_str());
  }
  if (core_) {
    core_->Stop();
    if (getenv("VARAN_TEST_SHOW_LOGS"))
      fprintf(stderr, "%s", core_->Log().c_str());
  }
}

std::string TestFleet::core_address() const {
  return absl::StrCat("[::1]:", core_port_);
}
std::string TestFleet::admin_token_file() const {
  return dir_.File("core/admin.token");
}
std::string TestFleet::join_token_file() const {
  return dir_.File("core/join.token");
}

bool TestFleet::plaintext() const {
  return std::find(extra_core_args_.begin(), extra_core_args_.end(),
                   "--insecure-plaintext") != extra_core_args_.end();
}

ClientTlsFiles PinnedCore(const std::string& core_data_dir) {
  ClientTlsFiles pinned;
  pinned.ca_pin = SplitJoinToken(ReadFile(core_data_dir + "/join.token")).pin;
  while (!pinned.ca_pin.empty() && pinned.ca_pin.back() == '\n') {
    pinned.ca_pin.pop_back();
  }
  return pinned;
}

std::shared_ptr<grpc::Channel> SecureChannel(const std::string& address,
                                             const ClientTlsFiles& tls) {
  auto security = MakeClientSecurity(tls);
  EXPECT_TRUE(security.ok()) << security.status();
  if (!security.ok()) return nullptr;
  grpc::ChannelArguments args;
  security->Apply(&args);
  return grpc::CreateCustomChannel(address, security->credentials, args);
}

ClientTlsFiles TestFleet::client_tls() const {
  if (client_tls_.enabled() || plaintext()) return client_tls_;
  return PinnedCore(dir_.File("core"));
}

ClientTlsFiles TestFleet::AsCore() const {
  ClientTlsFiles tls;
  tls.skip_verify = true;
  tls.cert = dir_.File("core/pki/core.crt");
  tls.key = dir_.File("core/pki/core.key");
  return tls;
}

std::shared_ptr<grpc::Channel> TestFleet::Channel(
    const std::string& address) const {
  return SecureChannel(address.empty() ? core_address() : address,
                       client_tls());
}

void TestFleet::StartCore() {
  std::vector<std::string> argv = {BinPath("varan-core"),
                                   "--listen",
                                   absl::StrCat("[::]:", core_port_),
                                   "--data-dir",
                                   dir_.File("core"),
                                   "--log-level",
                                   "debug"};
  argv.insert(argv.end(), extra_core_args_.begin(), extra_core_args_.end());
  // See ~TestFleet: core's idle channels to peripheries poll often here so
  // stopping a periphery does not wait for core's backup poller.
  core_ = std::make_unique<Daemon>(
      argv, dir_.File("core.log"),
      std::map<std::string, std::string>{
          {"GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "100"}});
  core_->set_file_limit(core_file_limit_);
  core_->Start();
  client_.reset();
  // Probe with fresh channels: a channel that found the port closed backs
  // off for seconds before trying again.
  // The first start asks for port 0 (no race with parallel tests) and
  // learns the port from core's log; a restart reuses it.
  if (core_port_ == 0) {
    const std::string marker = "listening on [::]:";
    WaitFor([&] {
      std::string log = core_->Log();
      size_t at = log.find(marker);
      if (at == std::string::npos) return !core_->Running();
      size_t end = log.find_first_not_of("0123456789", at + marker.size());
      if (end == std::string::npos) return false;
      core_port_ = static_cast<uint16_t>(
          std::stoi(log.substr(at + marker.size(), end - at - marker.size())));
      return true;
    });
  }
  bool up = WaitFor([&] {
    if (!core_->Running()) return true;  // reported below
    return core_port_ != 0 && !ReadFile(admin_token_file()).empty() &&
           Healthy(core_address(), client_tls());
  });
  // Its exit code says why when it wrote nothing (126/127: it never ran).
  ASSERT_TRUE(up && core_->Running())
      << "core did not come up (pid " << core_->pid() << ", "
      << (core_->Running()
              ? std::string("still running, not healthy")
              : absl::StrCat("exit code ", core_->Wait(absl::ZeroDuration())))
      << "):\n"
      << core_->Log();
}

int TestFleet::StopCore(int sig) {
  client_.reset();
  return core_->Stop(sig, absl::Seconds(15));
}

varan::v1::Job TestFleet::WaitFinished(const std::string& id,
                                       absl::Duration timeout) {
  varan::v1::Job job;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto j = client()->GetJob(id, kPreview);
        if (!j.ok()) return false;
        job = *j;
        return job.state() != varan::v1::JOB_STATE_RUNNING;
      },
      timeout))
      << "job " << id << " still running: " << job.DebugString();
  return job;
}

client::CoreClient* TestFleet::client() {
  if (client_ == nullptr) {
    std::string token = ReadFile(admin_token_file());
    while (!token.empty() && token.back() == '\n') token.pop_back();
    if (token.empty()) return nullptr;
    auto c = client::CoreClient::Create(
        {core_address(), token, absl::Seconds(5), client_tls()});
    if (!c.ok()) return nullptr;
    client_ = *std::move(c);
  }
  return client_.get();
}

Daemon* TestFleet::StartPeriphery(const std::string& name,
                                  const std::vector<std::string>& labels,
                                  std::vector<std::string> extra_args,
                                  std::map<std::string, std::string> env) {
  const bool tunnel = std::find(extra_args.begin(), extra_args.end(),
                                "--tunnel") != extra_args.end();
  Daemon* d =
      LaunchPeriphery(name, labels, std::move(extra_args), std::move(env));
  varan::v1::Target target;
  target.add_names(name);
  bool online = WaitFor([&] {
    if (!d->Running()) return true;
    auto list = client()->ListPeripheries(target);
    return list.ok() && list->size() == 1 &&
           (*list)[0].state() == varan::v1::PERIPHERY_STATE_ONLINE;
  });
  EXPECT_TRUE(online && d->Running())
      << "periphery " << name << " did not register:\n"
      << d->Log();
  // With the built-in CA, the tunnel that registered is replaced at once by
  // one presenting the certificate core issued: a test freezing or cutting
  // the periphery before that one is open would see a command never reach
  // it, or the periphery find core unreachable instead of its tunnel closed.
  if (online && tunnel && !plaintext() && !client_tls_.enabled()) {
    EXPECT_TRUE(WaitFor([&] {
      return absl::StrContains(d->Log(), "tunnel to core at");
    })) << "periphery "
        << name << " did not open its tunnel again:\n"
        << d->Log();
  }
  return d;
}

Daemon* TestFleet::LaunchPeriphery(const std::string& name,
                                   const std::vector<std::string>& labels,
                                   std::vector<std::string> extra_args,
                                   std::map<std::string, std::string> env) {
  // `extra_args` may bring a join token file of its own.
  const bool own_join_token =
      std::find(extra_args.begin(), extra_args.end(), "--join-token-file") !=
      extra_args.end();
  std::vector<std::string> argv = {BinPath("varan-periphery"),
                                   "--core",
                                   core_address(),
                                   "--join-token-file",
                                   join_token_file(),
                                   "--name",
                                   name,
                                   "--listen",
                                   "[::1]:0",
                                   "--state-dir",
                                   dir_.File("periphery-" + name)};
  // ... and a --listen of its own (a fixed port, kept across restarts).
  if (std::find(extra_args.begin(), extra_args.end(), "--listen") !=
      extra_args.end()) {
    argv.erase(argv.begin() + 7, argv.begin() + 9);
  }
  if (own_join_token) argv.erase(argv.begin() + 3, argv.begin() + 5);
  if (plaintext()) argv.push_back("--insecure-plaintext");
  for (const auto& l : labels) {
    argv.push_back("--label");
    argv.push_back(l);
  }
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  auto daemon =
      std::make_unique<Daemon>(argv, dir_.File(name + ".log"), std::move(env));
  daemon->Start();
  Daemon* d = daemon.get();
  peripheries_.push_back(std::move(daemon));
  return d;
}

RunResult TestFleet::Ctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {BinPath("varanctl"), "--core",
                                   core_address(), "--token-file",
                                   admin_token_file()};
  const ClientTlsFiles tls = client_tls();
  if (plaintext()) argv.push_back("--insecure-plaintext");
  for (auto [flag, value] :
       {std::pair{"--tls-ca", &tls.ca}, std::pair{"--tls-cert", &tls.cert},
        std::pair{"--tls-key", &tls.key},
        std::pair{"--tls-server-name", &tls.server_name},
        std::pair{"--ca-hash", &tls.ca_pin}}) {
    if (!value->empty()) {
      argv.push_back(flag);
      argv.push_back(*value);
    }
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProgram(
      argv,
      {{"VARAN_CORE", ""}, {"VARAN_TOKEN", ""}, {"VARAN_TOKEN_FILE", ""}});
}

}  // namespace varan::testing

// Listening, start-up errors and configuration of the real daemons.
#include <signal.h>
#include <sys/stat.h>

#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "varan/v1/periphery.grpc.pb.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> CoreArgs(const TempDir& dir,
                                  const std::string& listen) {
  return {BinPath("varan-core"), "--listen", listen, "--data-dir",
          dir.File("core")};
}

TEST(ListenTest, WildcardListenerServesIpv4AndIpv6) {
  TestFleet fleet;
  fleet.StartCore();
  const std::string port = absl::StrCat(fleet.core_port());
  for (const std::string& address :
       {absl::StrCat("127.0.0.1:", port), absl::StrCat("[::1]:", port),
        absl::StrCat("localhost:", port)}) {
    EXPECT_TRUE(Healthy(address, fleet.client_tls())) << address;
    RunResult r =
        RunProgram({BinPath("varanctl"), "--core", address, "--ca-hash",
                    fleet.client_tls().ca_pin, "--token-file",
                    fleet.admin_token_file(), "peripheries", "list"});
    EXPECT_EQ(r.exit_code, 0) << address << ": " << r.err;
  }
  EXPECT_THAT(fleet.core()->Log(),
              HasSubstr(absl::StrCat("listening on [::]:", port)));
  EXPECT_THAT(ReflectionServices(fleet.core_address(), fleet.client_tls()),
              ::testing::IsSupersetOf({"varan.v1.Registry", "varan.v1.Fleet",
                                       "varan.v1.Jobs", "varan.v1.Admin",
                                       "grpc.health.v1.Health"}));
}

// varanctl --core with several addresses (core replicas): one that does not
// answer is passed over.
TEST(ListenTest, VaranctlUsesTheFirstOfSeveralCoresThatAnswers) {
  TestFleet fleet;
  fleet.StartCore();
  fleet.StartPeriphery("alpha");
  const std::string cores =
      absl::StrCat("[::1]:", FreePort(), ",", fleet.core_address());
  RunResult r = RunProgram({BinPath("varanctl"), "--core", cores, "--ca-hash",
                            fleet.client_tls().ca_pin, "--token-file",
                            fleet.admin_token_file(), "peripheries", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("alpha"));
}

TEST(ListenTest, PeripheryServesHealthAndRefusesStrangers) {
  TestFleet fleet;
  fleet.StartCore();
  uint16_t port = FreePort();
  fleet.StartPeriphery("alpha", {}, {"--listen", absl::StrCat("[::]:", port)});
  // Listens on the helper's [::1]:0 and on this wildcard port, over TLS
  // with the certificate core issued it (health and reflection ask for no
  // client certificate).
  ClientTlsFiles any_server;
  any_server.skip_verify = true;
  EXPECT_TRUE(Healthy(absl::StrCat("127.0.0.1:", port), any_server));
  EXPECT_TRUE(Healthy(absl::StrCat("[::1]:", port), any_server));
  EXPECT_FALSE(Healthy(absl::StrCat("[::1]:", port)));
  EXPECT_THAT(ReflectionServices(absl::StrCat("[::1]:", port), any_server),
              ::testing::Contains("varan.v1.Agent"));

  // Only core, presenting its certificate, may run commands there: no token
  // does without it.
  auto channel = SecureChannel(absl::StrCat("[::1]:", port), any_server);
  auto agent = varan::v1::Agent::NewStub(channel);
  std::string join = ReadFile(fleet.join_token_file());
  join.pop_back();  // newline
  for (const std::string& token : {std::string(), std::string("guess"), join}) {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    varan::v1::ExecuteRequest req;
    req.mutable_spec()->add_argv("true");
    auto reader = agent->Execute(&ctx, req);
    varan::v1::ExecuteEvent ev;
    EXPECT_FALSE(reader->Read(&ev));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
}

TEST(ListenTest, SecondDaemonOnSamePortFailsClearly) {
  TempDir dir1, dir2;
  uint16_t port = FreePort();
  const std::string listen = absl::StrCat("[::]:", port);
  Daemon first(CoreArgs(dir1, listen), dir1.File("log"));
  first.Start();
  ASSERT_TRUE(WaitFor([&] {
    return Healthy(absl::StrCat("[::1]:", port), PinnedCore(dir1.File("core")));
  })) << first.Log();

  RunResult second = RunProgram(CoreArgs(dir2, listen), {}, absl::Seconds(15));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err,
              HasSubstr(absl::StrCat("cannot listen on [::]:", port)));
  EXPECT_THAT(second.err, HasSubstr("Address already in use"));
  // One line, no stack trace.
  EXPECT_EQ(std::count(second.err.begin(), second.err.end(), '\n'), 1)
      << second.err;
  // An IPv4-only listener on the same port collides with the dual-stack one.
  RunResult v4 = RunProgram(CoreArgs(dir2, absl::StrCat("0.0.0.0:", port)), {},
                            absl::Seconds(15));
  EXPECT_EQ(v4.exit_code, 1);
  EXPECT_THAT(v4.err, HasSubstr("Address already in use"));
  // The first core is unaffected.
  EXPECT_TRUE(
      Healthy(absl::StrCat("127.0.0.1:", port), PinnedCore(dir1.File("core"))));
  EXPECT_EQ(first.Stop(), 0);
}

// Two cores on one data directory would share its SQLite database: the
// second is refused at start, in one line naming the first one's pid; once
// the first is gone (even by kill -9), a new core starts on it.
TEST(ListenTest, SecondCoreOnTheSameDataDirectoryIsRefused) {
  TempDir dir;
  // A core on `dir`'s data directory and a port of its own, once it listens.
  auto start = [&](const std::string& log) {
    auto core = std::make_unique<Daemon>(
        CoreArgs(dir, absl::StrCat("[::]:", FreePort())), dir.File(log));
    core->Start();
    EXPECT_TRUE(WaitFor([&] {
      return absl::StrContains(core->Log(), "listening on");
    })) << core->Log();
    return core;
  };
  std::unique_ptr<Daemon> first = start("log");

  RunResult second = RunProgram(
      CoreArgs(dir, absl::StrCat("[::]:", FreePort())), {}, absl::Seconds(15));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err,
              HasSubstr(absl::StrCat(dir.File("core"),
                                     "/core.db is in use by another "
                                     "varan-core (process ",
                                     first->pid(), ")")));
  // The error is the last line, and one line.
  EXPECT_THAT(second.err, ::testing::EndsWith("a data directory of its own\n"));
  EXPECT_THAT(first->Log(), Not(HasSubstr("error")));

  EXPECT_EQ(first->Stop(SIGKILL), 128 + SIGKILL);
  std::unique_ptr<Daemon> third = start("log3");
  EXPECT_EQ(third->Stop(), 0);
}

TEST(ListenTest, BadInputGetsOneClearLine) {
  TempDir dir;
  WriteFile(dir.File("bad.toml"), "listen = [\"[::]:1\"]\nno_such_flag = 3\n");
  WriteFile(dir.File("broken.toml"), "listen = [\n");
  struct Case {
    std::vector<std::string> argv;
    std::string expect;
  } cases[] = {
      {{BinPath("varan-core"), "--bogus"}, "--bogus"},
      {{BinPath("varan-core"), "--listen", "fd00::1:7700", "--data-dir",
        dir.File("c")},
       "[fd00::1]:7700"},
      {{BinPath("varan-core"), "--listen", "[::]:99999", "--data-dir",
        dir.File("c")},
       "out of range"},
      {{BinPath("varan-core"), "--config", dir.File("missing.toml")},
       "missing.toml"},
      {{BinPath("varan-core"), "--config", dir.File("bad.toml")},
       "no_such_flag"},
      {{BinPath("varan-core"), "--config", dir.File("broken.toml")},
       "broken.toml:"},
      {{BinPath("varan-core"), "--log-level", "loud", "--data-dir",
        dir.File("c")},
       "loud"},
      {{BinPath("varan-periphery"), "--core", "[::1]:7700", "--join-token-file",
        dir.File("no.token")},
       "no.token"},
      {{BinPath("varan-periphery"), "--join-token-file", dir.File("no.token")},
       "--core is required"},
      {{BinPath("varan-periphery"), "--core", "[::1]:0", "--join-token-file",
        dir.File("no.token")},
       "port 0"},
      {{BinPath("varan-periphery"), "--core", "[::1]:7700,,[::1]:7701",
        "--join-token-file", dir.File("no.token")},
       "--core: address 2 of 3 in \"[::1]:7700,,[::1]:7701\" is empty"},
      {{BinPath("varanctl"), "--core", "fd00::1:7700", "--token-file",
        dir.File("bad.toml"), "peripheries", "list"},
       "[fd00::1]:7700"},
  };
  for (const auto& c : cases) {
    RunResult r = RunProgram(c.argv, {}, absl::Seconds(15));
    EXPECT_NE(r.exit_code, 0) << absl::StrJoin(c.argv, " ");
    EXPECT_NE(r.exit_code, -1) << absl::StrJoin(c.argv, " ");
    EXPECT_THAT(r.err, HasSubstr(c.expect)) << absl::StrJoin(c.argv, " ");
    EXPECT_LE(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;
  }
}

TEST(ListenTest, VersionAndHelp) {
  for (const char* bin : {"varan-core", "varan-periphery", "varanctl"}) {
    RunResult v = RunProgram({BinPath(bin), "--version"});
    EXPECT_EQ(v.exit_code, 0) << bin;
    EXPECT_THAT(v.out, HasSubstr(absl::StrCat(bin, " 0.")));
    RunResult h = RunProgram({BinPath(bin), "--help"});
    EXPECT_EQ(h.exit_code, 0) << bin;
    EXPECT_THAT(h.out, HasSubstr("Example"));
  }
}

TEST(ListenTest, FlagsBeatEnvironmentWhichBeatsConfigFile) {
  TempDir dir;
  uint16_t file_port = FreePort(), env_port = FreePort(),
           flag_port = FreePort();
  WriteFile(
      dir.File("core.toml"),
      absl::StrCat("listen = [\"[::]:", file_port, "\"]\n", "data-dir = \"",
                   dir.File("core"), "\"\n", "log-format = \"json\"\n"));
  {
    Daemon core({BinPath("varan-core"), "--config", dir.File("core.toml")},
                dir.File("file.log"));
    core.Start();
    EXPECT_TRUE(WaitFor([&] {
      return Healthy(absl::StrCat("[::1]:", file_port),
                     PinnedCore(dir.File("core")));
    })) << core.Log();
    EXPECT_EQ(core.Stop(), 0);
    // JSON log lines, and the token's path but never its content.
    std::string log = core.Log();
    std::string token = ReadFile(dir.File("core/admin.token"));
    token.pop_back();
    EXPECT_THAT(log, Not(HasSubstr(token)));
    for (absl::string_view line :
         absl::StrSplit(log, '\n', absl::SkipEmpty())) {
      EXPECT_TRUE(absl::StartsWith(line, "{\"time\":\"")) << line;
      EXPECT_TRUE(absl::EndsWith(line, "\"}")) << line;
    }
    EXPECT_THAT(log, HasSubstr("admin.token"));
  }
  {
    Daemon core({BinPath("varan-core"), "--config", dir.File("core.toml")},
                dir.File("env.log"),
                {{"VARAN_LISTEN", absl::StrCat("[::]:", env_port)}});
    core.Start();
    EXPECT_TRUE(WaitFor([&] {
      return Healthy(absl::StrCat("[::1]:", env_port),
                     PinnedCore(dir.File("core")));
    })) << core.Log();
    EXPECT_FALSE(Healthy(absl::StrCat("[::1]:", file_port),
                         PinnedCore(dir.File("core"))));
    EXPECT_EQ(core.Stop(), 0);
  }
  {
    Daemon core({BinPath("varan-core"), "--config", dir.File("core.toml"),
                 "--listen", absl::StrCat("[::]:", flag_port)},
                dir.File("flag.log"),
                {{"VARAN_LISTEN", absl::StrCat("[::]:", env_port)}});
    core.Start();
    EXPECT_TRUE(WaitFor([&] {
      return Healthy(absl::StrCat("[::1]:", flag_port),
                     PinnedCore(dir.File("core")));
    })) << core.Log();
    EXPECT_FALSE(Healthy(absl::StrCat("[::1]:", env_port),
                         PinnedCore(dir.File("core"))));
    EXPECT_EQ(core.Stop(), 0);
  }
}

TEST(ListenTest, ExampleConfigsAreAccepted) {
  TempDir dir;
  uint16_t core_port = FreePort(), periphery_port = FreePort();
  const std::string core_address = absl::StrCat("[::1]:", core_port);
  Daemon core({BinPath("varan-core"), "--config",
               absl::StrCat(VARAN_SOURCE_DIR, "/deploy/config/core.toml"),
               "--listen", core_address, "--data-dir", dir.File("core")},
              dir.File("core.log"));
  core.Start();
  ASSERT_TRUE(WaitFor([&] {
    return Healthy(core_address, PinnedCore(dir.File("core")));
  })) << core.Log();
  Daemon periphery(
      {BinPath("varan-periphery"), "--config",
       absl::StrCat(VARAN_SOURCE_DIR, "/deploy/config/periphery.toml"),
       "--core", core_address, "--join-token-file", dir.File("core/join.token"),
       "--listen", absl::StrCat("[::1]:", periphery_port), "--state-dir",
       dir.File("p"), "--name", "example"},
      dir.File("periphery.log"));
  periphery.Start();
  // The labels come from the file.
  EXPECT_TRUE(WaitFor([&] {
    RunResult r =
        RunProgram({BinPath("varanctl"), "--core", core_address, "--ca-hash",
                    PinnedCore(dir.File("core")).ca_pin, "--token-file",
                    dir.File("core/admin.token"), "peripheries", "list", "-l",
                    "env=prod,tier=web"});
    return r.exit_code == 0 && absl::StrContains(r.out, "example");
  })) << periphery.Log();
  EXPECT_EQ(periphery.Stop(), 0);
  EXPECT_EQ(core.Stop(), 0);
}

TEST(ListenTest, TokensAreCreatedPrivateAndKept) {
  TempDir dir;
  uint16_t port = FreePort();
  std::string admin;
  for (int run = 0; run < 2; ++run) {
    Daemon core(CoreArgs(dir, absl::StrCat("[::1]:", port)), dir.File("log"));
    core.Start();
    ASSERT_TRUE(WaitFor([&] {
      return Healthy(absl::StrCat("[::1]:", port),
                     PinnedCore(dir.File("core")));
    })) << core.Log();
    for (const char* name : {"admin.token", "join.token"}) {
      struct stat st {};
      ASSERT_EQ(stat(dir.File(absl::StrCat("core/", name)).c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 0777, 0600) << name;
    }
    std::string now = ReadFile(dir.File("core/admin.token"));
    EXPECT_EQ(now.size(), 65u);  // 64 hex characters and a newline
    if (run == 1) {
      EXPECT_EQ(now, admin);  // a restart keeps the tokens
    }
    admin = now;
    EXPECT_EQ(core.Stop(SIGINT), 0);
  }
}

}  // namespace
}  // namespace varan::testing

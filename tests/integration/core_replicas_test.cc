// A periphery given several cores (`--core a,b`, issue #19): it works
// through whichever answers, and moves to another when its core dies — in
// dial mode and in tunnel mode, with the real binaries on loopback.
//
// The two cores here do not share a database (each has its own data
// directory; only the join token is the same), so a periphery that moves
// registers again on the other core: the NOT_FOUND/UNAUTHENTICATED path.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/secrets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;

enum class Mode { kDial, kTunnel };

class CoreReplicasTest : public ::testing::TestWithParam<Mode> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(WriteSecretFile(join_file_, GenerateSecret()).ok());
  }

  void TearDown() override {
    // As TestFleet does for the daemons it starts.
    if (getenv("VARAN_TEST_SHOW_LOGS") != nullptr && periphery_ != nullptr) {
      fprintf(stderr, "%s", periphery_->Log().c_str());
    }
  }

  // A core of its own (data directory, database) accepting the shared join
  // token, with a short heartbeat interval so that a dead core is noticed
  // quickly in dial mode. Plaintext: cores that are not replicas of one
  // database have no CA in common for a periphery to pin.
  std::unique_ptr<TestFleet> StartCore() {
    auto fleet = std::make_unique<TestFleet>(std::vector<std::string>{
        "--join-token-file", join_file_, "--heartbeat-interval", "0.5",
        "--insecure-plaintext"});
    fleet->StartCore();
    return fleet;
  }

  // Starts periphery `name` with `core_args` (its --core flags); the
  // fixture owns it.
  Daemon* StartPeriphery(const std::string& name,
                         std::vector<std::string> core_args) {
    std::vector<std::string> argv = {BinPath("varan-periphery"),
                                     "--join-token-file",
                                     join_file_,
                                     "--name",
                                     name,
                                     "--state-dir",
                                     secrets_.File("state-" + name),
                                     "--reconnect-max-backoff",
                                     "1",
                                     "--log-level",
                                     "debug",
                                     "--insecure-plaintext"};
    if (GetParam() == Mode::kTunnel) {
      argv.insert(argv.end(), {"--tunnel", "--no-listen"});
    } else {
      argv.insert(argv.end(), {"--listen", "[::1]:0"});
    }
    argv.insert(argv.end(), core_args.begin(), core_args.end());
    auto daemon = std::make_unique<Daemon>(argv, secrets_.File(name + ".log"));
    daemon->Start();
    periphery_ = std::move(daemon);
    return periphery_.get();
  }

  // Waits until `fleet`'s core lists `name` online.
  static bool WaitOnline(TestFleet& fleet, const std::string& name,
                         absl::Duration timeout = absl::Seconds(10)) {
    varan::v1::Target target;
    target.add_names(name);
    return WaitFor(
        [&] {
          auto list = fleet.client()->ListPeripheries(target);
          return list.ok() && list->size() == 1 &&
                 (*list)[0].state() == varan::v1::PERIPHERY_STATE_ONLINE;
        },
        timeout);
  }

  // A command through `fleet`'s core on `name`: its output.
  static void ExpectCommandRuns(TestFleet& fleet, const std::string& name) {
    RunResult r = fleet.Ctl({"exec", "-n", name, "--", "echo", "replica"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "replica\n");
  }

  TempDir secrets_;
  const std::string join_file_ = secrets_.File("join.token");
  std::unique_ptr<Daemon> periphery_;
};

TEST_P(CoreReplicasTest, UnreachableFirstCoreIsPassedOver) {
  std::unique_ptr<TestFleet> live = StartCore();
  const std::string dead = absl::StrCat("[::1]:", FreePort());
  // Both ways of giving the list: repeated --core, and comma-separated.
  std::vector<std::string> core_args =
      GetParam() == Mode::kDial
          ? std::vector<std::string>{"--core", dead, "--core",
                                     live->core_address()}
          : std::vector<std::string>{
                "--core", absl::StrCat(dead, ",", live->core_address())};
  Daemon* periphery = StartPeriphery("p1", core_args);
  ASSERT_TRUE(WaitOnline(*live, "p1")) << periphery->Log();
  ExpectCommandRuns(*live, "p1");
  EXPECT_THAT(periphery->Log(),
              HasSubstr(absl::StrCat("core at ", dead,
                                     " is unreachable (UNAVAILABLE")));
  EXPECT_THAT(periphery->Log(), HasSubstr(absl::StrCat("moving to core at ",
                                                       live->core_address())));
  EXPECT_EQ(periphery->Stop(), 0);
}

TEST_P(CoreReplicasTest, PeripheryMovesToTheOtherCoreWhenItsCoreDies) {
  std::unique_ptr<TestFleet> a = StartCore();
  std::unique_ptr<TestFleet> b = StartCore();
  Daemon* periphery = StartPeriphery(
      "p2",
      {"--core", absl::StrCat(a->core_address(), ",", b->core_address())});
  ASSERT_TRUE(WaitOnline(*a, "p2")) << periphery->Log();
  ExpectCommandRuns(*a, "p2");

  a->StopCore(SIGKILL);
  const absl::Time killed = absl::Now();
  ASSERT_TRUE(WaitOnline(*b, "p2", absl::Seconds(10))) << periphery->Log();
  const absl::Duration took = absl::Now() - killed;
  // Online on the other core within a few seconds (dial mode notices at its
  // next heartbeat, half a second here; a tunnel at once).
  EXPECT_LT(took, absl::Seconds(5)) << periphery->Log();
  ExpectCommandRuns(*b, "p2");
  const std::string log = periphery->Log();
  EXPECT_THAT(log, HasSubstr(absl::StrCat("core at ", a->core_address(),
                                          " is unreachable")));
  EXPECT_THAT(log,
              HasSubstr(absl::StrCat("moving to core at ", b->core_address())));
  EXPECT_THAT(log, HasSubstr(absl::StrCat("registered with core at ",
                                          b->core_address())));
  // Neither the join token nor the credential is logged.
  for (const std::string& file :
       {join_file_, secrets_.File("state-p2/credential")}) {
    auto secret = ReadSecretFile(file);
    ASSERT_TRUE(secret.ok()) << secret.status();
    EXPECT_THAT(log, ::testing::Not(HasSubstr(*secret))) << file;
  }
  EXPECT_EQ(periphery->Stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Modes, CoreReplicasTest,
                         ::testing::Values(Mode::kDial, Mode::kTunnel),
                         [](const ::testing::TestParamInfo<Mode>& param) {
                           return param.param == Mode::kDial ? "Dial"
                                                             : "Tunnel";
                         });

}  // namespace
}  // namespace varan::testing

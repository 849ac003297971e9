// The client examples (client/examples/: Python, Node.js, C++) against a
// real core and periphery: each lists the fleet, streams an Exec, and exits
// 0 only when the job succeeded. They speak TLS checked against core's
// built-in cluster CA (the default), and plaintext only when told to. Their
// tools (python3-grpcio, protoc's Python plugin, node and npm) are required,
// never skipped: CI installs them with scripts/install-deps.sh, and the Node
// packages come from the example's package-lock.json (npm ci into the build
// directory).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/pki.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kSourceDir = VARAN_SOURCE_DIR;
const std::string kNodeExampleDir = VARAN_NODE_EXAMPLE_DIR;

// Installs the Node example's packages into kNodeExampleDir (npm ci from the
// committed lockfile, so the source tree is not written to) unless the same
// lockfile was installed there before. Test processes that ctest runs in
// parallel take turns through an flock.
::testing::AssertionResult EnsureNodeModules() {
  if (std::string(VARAN_NODE).empty() || std::string(VARAN_NPM).empty()) {
    return ::testing::AssertionFailure()
           << "node or npm was not found at configure time; run "
              "scripts/install-deps.sh and configure again";
  }
  std::filesystem::create_directories(kNodeExampleDir);
  int lock_fd = open((kNodeExampleDir + "/.lock").c_str(),
                     O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock_fd < 0 || flock(lock_fd, LOCK_EX) != 0) {
    if (lock_fd >= 0) close(lock_fd);
    return ::testing::AssertionFailure() << "cannot lock " << kNodeExampleDir;
  }
  const std::string src = kSourceDir + "/client/examples/node/";
  const std::string lockfile = ReadFile(src + "package-lock.json");
  const std::string stamp = kNodeExampleDir + "/installed-package-lock.json";
  auto result = ::testing::AssertionSuccess();
  if (lockfile.empty()) {
    result = ::testing::AssertionFailure()
             << "no " << src << "package-lock.json";
  } else if (ReadFile(stamp) != lockfile ||
             !std::filesystem::exists(kNodeExampleDir +
                                      "/node_modules/@grpc/grpc-js")) {
    std::filesystem::remove(stamp);
    WriteFile(kNodeExampleDir + "/package.json",
              ReadFile(src + "package.json"));
    WriteFile(kNodeExampleDir + "/package-lock.json", lockfile);
    // npm through node itself: its `#!/usr/bin/env node` would need PATH.
    // No install scripts: none of these packages needs one.
    RunResult npm = RunProgram(
        {VARAN_NODE, VARAN_NPM, "ci", "--prefix", kNodeExampleDir,
         "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"},
        {}, absl::Minutes(3));
    if (npm.exit_code == 0) {
      WriteFile(stamp, lockfile);
    } else {
      result = ::testing::AssertionFailure()
               << "npm ci exited with " << npm.exit_code << ":\n"
               << npm.out << npm.err;
    }
  }
  flock(lock_fd, LOCK_UN);
  close(lock_fd);
  return result;
}

// Generates the Python stubs of proto/varan/v1 into `out_dir`.
::testing::AssertionResult GeneratePythonStubs(const std::string& out_dir) {
  if (std::string(VARAN_GRPC_PYTHON_PLUGIN).empty()) {
    return ::testing::AssertionFailure()
           << "grpc_python_plugin was not found at configure time; run "
              "scripts/install-deps.sh and configure again";
  }
  RunResult protoc = RunProgram(
      {VARAN_PROTOC, "-I", kSourceDir + "/proto", "-I", "/usr/include",
       "--python_out=" + out_dir, "--grpc_python_out=" + out_dir,
       absl::StrCat("--plugin=protoc-gen-grpc_python=",
                    VARAN_GRPC_PYTHON_PLUGIN),
       kSourceDir + "/proto/varan/v1/common.proto",
       kSourceDir + "/proto/varan/v1/core.proto",
       kSourceDir + "/proto/varan/v1/periphery.proto"});
  if (protoc.exit_code != 0) {
    return ::testing::AssertionFailure() << "protoc: " << protoc.err;
  }
  return ::testing::AssertionSuccess();
}

// One language's example: how to prepare for it and how to run it.
struct Example {
  std::string language;
  // The program and its first arguments; options and the command follow.
  std::vector<std::string> argv;
};

// Names the case in test output; ctest then names the tests
// Clients/ClientExampleTest.<Test>/<language>. (A custom gtest name generator
// would leave gtest's "# GetParam() = ..." in the ctest names.)
void PrintTo(const Example& example, std::ostream* os) {
  *os << example.language;
}

class ClientExampleTest : public ::testing::TestWithParam<Example> {
 protected:
  void SetUp() override {
    const std::string& language = GetParam().language;
    if (language == "python") {
      ASSERT_TRUE(GeneratePythonStubs(stubs_.path()));
      env_["PYTHONPATH"] = stubs_.path();
    } else if (language == "node") {
      ASSERT_TRUE(EnsureNodeModules());
      env_["NODE_PATH"] = kNodeExampleDir + "/node_modules";
    }
    // Only what each test passes configures the example.
    env_["VARAN_CORE"] = "";
    env_["VARAN_TOKEN_FILE"] = "";
    env_["VARAN_CA_FILE"] = "";
    env_["VARAN_CA_HASH"] = "";

    // Core as it starts by default: TLS from its built-in cluster CA.
    fleet_ = std::make_unique<TestFleet>();
    fleet_->StartCore();
    fleet_->StartPeriphery("alpha", {"env=test"});
  }

  // Core's CA certificate, which the examples verify it with.
  std::string CaFile() const { return fleet_->dir().File("core/pki/ca.crt"); }

  // Runs the example with `args`, and `env` on top of this test's.
  RunResult Run(const std::vector<std::string>& args,
                std::map<std::string, std::string> env = {}) {
    std::vector<std::string> argv = GetParam().argv;
    argv.insert(argv.end(), args.begin(), args.end());
    env.insert(env_.begin(), env_.end());
    return RunProgram(argv, env, absl::Seconds(20));
  }

  TempDir stubs_;
  std::map<std::string, std::string> env_;
  std::unique_ptr<TestFleet> fleet_;
};

TEST_P(ClientExampleTest, ListsPeripheriesAndExecs) {
  const std::string greeting = "hello-from-" + GetParam().language;
  RunResult r = Run({"--core", fleet_->core_address(), "--token-file",
                     fleet_->admin_token_file(), "--ca-file", CaFile(),
                     "--selector", "env=test", "--", "echo", greeting});

  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("1 peripheries:\n  alpha\t"
                               "PERIPHERY_STATE_ONLINE\tenv=test"));
  EXPECT_THAT(r.out, HasSubstr(greeting + "\n"));
  EXPECT_THAT(r.out, HasSubstr("alpha: TARGET_STATE_EXITED (exit code 0)"));
  EXPECT_THAT(r.out, HasSubstr(": JOB_STATE_SUCCEEDED"));
}

// Also: the core, the token file and the CA from the environment.
TEST_P(ClientExampleTest, FailingCommandExitsNonZero) {
  RunResult r = Run({"--", "echo", "about-to-fail;", "exit", "3"},
                    {{"VARAN_CORE", fleet_->core_address()},
                     {"VARAN_TOKEN_FILE", fleet_->admin_token_file()},
                     {"VARAN_CA_FILE", CaFile()}});

  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.exit_code, -1) << "timed out:\n" << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("alpha\tPERIPHERY_STATE_ONLINE"));
  EXPECT_THAT(r.out, HasSubstr("about-to-fail\n"));
  EXPECT_THAT(r.out, HasSubstr("alpha: TARGET_STATE_EXITED (exit code 3)"));
  EXPECT_THAT(r.out, HasSubstr(": JOB_STATE_FAILED"));
  EXPECT_THAT(r.out, Not(HasSubstr("SUCCEEDED")));
}

// A wrong token is reported, not mistaken for a job outcome.
TEST_P(ClientExampleTest, WrongTokenFails) {
  TempDir dir;
  WriteFile(dir.File("token"), "not-the-token\n");
  RunResult r = Run({"--core", fleet_->core_address(), "--token-file",
                     dir.File("token"), "--ca-file", CaFile(), "--", "true"});

  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("UNAUTHENTICATED"));
}

// Without a CA (or --insecure-plaintext) an example says what to pass and
// sends nothing; with another CA's certificate it does not reach core, so
// the command never runs.
TEST_P(ClientExampleTest, CoreIsVerifiedAgainstItsCa) {
  TempDir dir;
  const std::string marker = dir.File("ran");
  const std::vector<std::string> command = {"--", "touch", marker};
  std::vector<std::string> unverified = {"--core", fleet_->core_address(),
                                         "--token-file",
                                         fleet_->admin_token_file()};
  unverified.insert(unverified.end(), command.begin(), command.end());
  RunResult none = Run(unverified);
  EXPECT_EQ(none.exit_code, 2) << none.out << none.err;
  EXPECT_THAT(none.err, HasSubstr("--ca-file"));
  EXPECT_THAT(none.err, HasSubstr("--insecure-plaintext"));

  // Plaintext to a core serving TLS fails too.
  std::vector<std::string> plaintext = unverified;
  plaintext.insert(plaintext.begin(), "--insecure-plaintext");
  RunResult plain = Run(plaintext);
  EXPECT_EQ(plain.exit_code, 2) << plain.out << plain.err;
  EXPECT_THAT(plain.err, HasSubstr("UNAVAILABLE"));

  auto other = pki::CreateAuthority("another-ca", absl::Now(), absl::Hours(1));
  ASSERT_TRUE(other.ok()) << other.status();
  WriteFile(dir.File("other-ca.crt"), other->cert_pem);
  std::vector<std::string> wrong = unverified;
  wrong.insert(wrong.begin(), {"--ca-file", dir.File("other-ca.crt")});
  RunResult refused = Run(wrong);
  EXPECT_EQ(refused.exit_code, 2) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("UNAVAILABLE"));

  EXPECT_FALSE(std::filesystem::exists(marker));
  // Nor did core record a job for it.
  RunResult jobs = fleet_->Ctl({"jobs", "list", "-o", "json"});
  EXPECT_EQ(jobs.exit_code, 0) << jobs.err;
  EXPECT_THAT(jobs.out, Not(HasSubstr(marker)));
}

// A core started with --insecure-plaintext, reached with
// --insecure-plaintext.
TEST_P(ClientExampleTest, PlaintextCoreWithInsecurePlaintext) {
  TestFleet plain(std::vector<std::string>{"--insecure-plaintext"});
  plain.StartCore();
  plain.StartPeriphery("beta");
  RunResult r = Run({"--core", plain.core_address(), "--token-file",
                     plain.admin_token_file(), "--insecure-plaintext", "--",
                     "echo", "in-the-clear"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("in-the-clear\n"));
  EXPECT_THAT(r.out, HasSubstr("beta: TARGET_STATE_EXITED (exit code 0)"));
}

INSTANTIATE_TEST_SUITE_P(
    Clients, ClientExampleTest,
    ::testing::Values(
        Example{"python",
                {VARAN_PYTHON,
                 kSourceDir + "/client/examples/python/varan_example.py"}},
        Example{"node",
                {VARAN_NODE,
                 kSourceDir + "/client/examples/node/varan_example.js"}},
        Example{"cpp", {BinPath("varan_client_example")}}));

// The C++ example (CoreClient) also pins core by the hash of its CA, as
// varanctl does: the part of the join token after the dot.
TEST(ClientExampleCppTest, PinsCoreByItsCaHash) {
  TestFleet fleet;
  fleet.StartCore();
  fleet.StartPeriphery("gamma");
  const std::string pin = PinnedCore(fleet.dir().File("core")).ca_pin;
  ASSERT_THAT(pin, ::testing::StartsWith("sha256:"));
  RunResult r = RunProgram(
      {BinPath("varan_client_example"), "--core", fleet.core_address(),
       "--token-file", fleet.admin_token_file(), "--ca-hash", pin, "--", "echo",
       "pinned"},
      {{"VARAN_CA_FILE", ""}}, absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("pinned\n"));

  // Another pin: refused before anything is sent.
  std::string other = pin;
  other.back() = other.back() == '0' ? '1' : '0';
  RunResult refused = RunProgram(
      {BinPath("varan_client_example"), "--core", fleet.core_address(),
       "--token-file", fleet.admin_token_file(), "--ca-hash", other, "--",
       "echo", "pinned"},
      {{"VARAN_CA_FILE", ""}}, absl::Seconds(20));
  EXPECT_EQ(refused.exit_code, 2) << refused.out << refused.err;
  EXPECT_THAT(refused.out, Not(HasSubstr("pinned")));
}

}  // namespace
}  // namespace varan::testing

// Tests for common/config.h: flags beat VARAN_* environment variables, which
// beat the TOML file; bad files are reported with the file, line and key.
#include "common/config.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/scoped_env.h"

namespace varan {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Every option kind a daemon uses.
struct Flags {
  std::string name;
  std::vector<std::string> peers;
  int port = 7700;
  bool verbose = false;
  std::string data_dir;
  std::string config;
};

using ::varan::testing::ScopedEnv;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/varan-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // The tests decide which VARAN_* variables exist.
    for (const char* name :
         {"VARAN_NAME", "VARAN_PEER", "VARAN_PORT", "VARAN_VERBOSE",
          "VARAN_DATA_DIR", "VARAN_CONFIG"}) {
      cleared_.push_back(std::make_unique<ScopedEnv>(name, std::nullopt));
    }
    app_ = std::make_unique<CLI::App>("test daemon", "varan-test");
    app_->add_option("--name", flags_.name);
    app_->add_option("--peer", flags_.peers);
    app_->add_option("--port", flags_.port);
    app_->add_flag("--verbose", flags_.verbose);
    app_->add_option("--data-dir", flags_.data_dir);
    app_->add_option("--config", flags_.config);
  }

  void TearDown() override {
    cleared_.clear();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Binds the environment and parses `args` (without the program name).
  void Parse(std::vector<std::string> args) {
    BindEnvironment(*app_);
    args.insert(args.begin(), "varan-test");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    app_->parse(static_cast<int>(argv.size()), argv.data());
  }

  std::string WriteFile(const std::string& name, const std::string& content) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << content;
    return path;
  }

  absl::Status Apply(const std::string& toml) {
    return ApplyConfigFile(*app_, WriteFile("varan.toml", toml));
  }

  std::string dir_;
  std::vector<std::unique_ptr<ScopedEnv>> cleared_;
  Flags flags_;
  std::unique_ptr<CLI::App> app_;
};

TEST_F(ConfigTest, EnvVarForUppercasesAndReplacesDashes) {
  EXPECT_EQ(EnvVarFor("data-dir"), "VARAN_DATA_DIR");
  EXPECT_EQ(EnvVarFor("port"), "VARAN_PORT");
  EXPECT_EQ(EnvVarFor("join-token-file"), "VARAN_JOIN_TOKEN_FILE");
}

TEST_F(ConfigTest, BindEnvironmentSkipsHelpAndConfig) {
  BindEnvironment(*app_);
  EXPECT_EQ(app_->get_option("--data-dir")->get_envname(), "VARAN_DATA_DIR");
  EXPECT_EQ(app_->get_option("--verbose")->get_envname(), "VARAN_VERBOSE");
  EXPECT_EQ(app_->get_option("--config")->get_envname(), "");
  EXPECT_EQ(app_->get_option("--help")->get_envname(), "");
}

struct PrecedenceCase {
  std::string label;
  std::optional<std::string> flag;
  std::optional<std::string> env;
  std::optional<std::string> file;
  int want;
};

TEST_F(ConfigTest, FlagsBeatEnvironmentWhichBeatsTheFile) {
  const std::vector<PrecedenceCase> cases = {
      {"all three", "1", "2", "3", 1},
      {"flag and file", "1", std::nullopt, "3", 1},
      {"flag and env", "1", "2", std::nullopt, 1},
      {"env and file", std::nullopt, "2", "3", 2},
      {"file only", std::nullopt, std::nullopt, "3", 3},
      {"nothing", std::nullopt, std::nullopt, std::nullopt, 7700},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    flags_ = Flags();
    app_->clear();
    ScopedEnv env("VARAN_PORT", c.env);
    std::vector<std::string> args;
    if (c.flag) args = {"--port", *c.flag};
    Parse(args);
    absl::Status status = Apply(c.file ? "port = " + *c.file + "\n" : "");
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_EQ(flags_.port, c.want);
  }
}

TEST_F(ConfigTest, FileFillsEveryKindOfOption) {
  Parse({});
  absl::Status status = Apply(
      "name = \"edge-1\"\n"
      "peer = [\"a:1\", \"b:2\"]\n"
      "port = 9000\n"
      "verbose = true\n"
      "data-dir = \"/var/lib/varan\"\n");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(flags_.name, "edge-1");
  EXPECT_THAT(flags_.peers, ElementsAre("a:1", "b:2"));
  EXPECT_EQ(flags_.port, 9000);
  EXPECT_TRUE(flags_.verbose);
  EXPECT_EQ(flags_.data_dir, "/var/lib/varan");
}

TEST_F(ConfigTest, UnderscoresInKeysMapToDashes) {
  Parse({});
  absl::Status status = Apply("data_dir = \"/srv/varan\"\n");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(flags_.data_dir, "/srv/varan");
}

TEST_F(ConfigTest, RepeatedFlagsAreNotMergedWithTheFileArray) {
  Parse({"--peer", "x:1", "--peer", "y:2"});
  absl::Status status = Apply("peer = [\"a:1\", \"b:2\", \"c:3\"]\n");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(flags_.peers, ElementsAre("x:1", "y:2"));
}

TEST_F(ConfigTest, EnvironmentSetsFlagsAndStringsOverTheFile) {
  ScopedEnv verbose("VARAN_VERBOSE", "true");
  ScopedEnv data_dir("VARAN_DATA_DIR", "/from/env");
  Parse({});
  absl::Status status = Apply(
      "verbose = false\n"
      "data_dir = \"/from/file\"\n"
      "name = \"from-file\"\n");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_TRUE(flags_.verbose);
  EXPECT_EQ(flags_.data_dir, "/from/env");
  EXPECT_EQ(flags_.name, "from-file");
}

TEST_F(ConfigTest, UnknownKeyNamesTheKeyFileAndLine) {
  Parse({});
  const std::string path = WriteFile("typo.toml", "port = 1\n\nprot = 2\n");
  absl::Status status = ApplyConfigFile(*app_, path);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr(path + ":3"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("unknown key \"prot\""));
}

TEST_F(ConfigTest, HelpAndConfigAreNotSettableFromTheFile) {
  Parse({});
  for (const std::string key : {"help", "config", "version"}) {
    SCOPED_TRACE(key);
    absl::Status status = Apply(key + " = true\n");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("unknown key \"" + key + "\""));
  }
}

TEST_F(ConfigTest, SyntaxErrorNamesFileAndLine) {
  Parse({});
  const std::string path = WriteFile("broken.toml", "port = 1\nname = \n");
  absl::Status status = ApplyConfigFile(*app_, path);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr(path + ":2:"));
}

TEST_F(ConfigTest, MissingFileIsNotFound) {
  Parse({});
  const std::string path = dir_ + "/nope.toml";
  absl::Status status = ApplyConfigFile(*app_, path);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()), HasSubstr(path));
}

struct BadValueCase {
  std::string toml;
  std::string message_part;
};

TEST_F(ConfigTest, BadValuesAreInvalidArgumentNamingTheKey) {
  const std::vector<BadValueCase> cases = {
      {"port = \"abc\"\n", "\"port\""},
      {"port = [1, 2]\n", "\"port\" takes one value, not an array"},
      {"name = { first = \"a\" }\n", "\"name\" must be a string"},
      {"peer = [[\"a\"]]\n", "\"peer\" must be an array of scalars"},
      {"[section]\nport = 1\n", "unknown key \"section\""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.toml);
    flags_ = Flags();
    app_->clear();
    Parse({});
    absl::Status status = Apply(c.toml);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message_part));
    EXPECT_THAT(std::string(status.message()), HasSubstr(dir_));
  }
}

TEST_F(ConfigTest, SingleElementArrayFillsAScalarOption) {
  Parse({});
  absl::Status status = Apply("name = [\"solo\"]\n");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(flags_.name, "solo");
  EXPECT_THAT(flags_.peers, IsEmpty());
}

TEST_F(ConfigTest, ParseDaemonFlagsAppliesTheConfigFile) {
  BindEnvironment(*app_);
  const std::string path = WriteFile("daemon.toml", "port = 4242\n");
  std::vector<std::string> args = {"varan-test", "--config", path, "--name",
                                   "n1"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  int exit_code = -1;
  EXPECT_TRUE(ParseDaemonFlags(*app_, "--config", static_cast<int>(argv.size()),
                               argv.data(), &exit_code));
  EXPECT_EQ(flags_.port, 4242);
  EXPECT_EQ(flags_.name, "n1");
}

TEST_F(ConfigTest, ParseDaemonFlagsFailsWithExitCodeTwo) {
  BindEnvironment(*app_);
  const std::string path = WriteFile("daemon.toml", "nonsense = 1\n");
  for (std::vector<std::string> args :
       {std::vector<std::string>{"varan-test", "--config", path},
        std::vector<std::string>{"varan-test", "--no-such-flag"}}) {
    flags_ = Flags();
    app_->clear();
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    int exit_code = -1;
    EXPECT_FALSE(ParseDaemonFlags(*app_, "--config",
                                  static_cast<int>(argv.size()), argv.data(),
                                  &exit_code));
    EXPECT_EQ(exit_code, 2);
  }
}

}  // namespace
}  // namespace varan

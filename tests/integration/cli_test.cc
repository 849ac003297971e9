// varanctl's user-facing behaviour through the real binaries: output formats
// (table, wide, json, yaml) parsed back, exec's --group / --no-prefix /
// --dry-run / --all and exit codes, contexts, bash completion, version, and
// the one-line errors.
//
// One fleet (core + four peripheries) is shared by the suite: starting it is
// most of the cost, and no test changes it.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "varan/v1/core.grpc.pb.h"
#include "varan/v1/core.pb.h"
#include "varan/version.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Prints "different" when run by the periphery named delta, else "same":
// commands run in their periphery's state directory, "periphery-<name>".
constexpr char kDeltaDiffers[] =
    "case \"$PWD\" in *-delta) echo different;; *) echo same;; esac";

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fleet_ = new TestFleet();
    fleet_->StartCore();
    fleet_->StartPeriphery("alpha", {"tier=web"});
    fleet_->StartPeriphery("beta", {"tier=web"});
    fleet_->StartPeriphery("gamma", {"tier=db"});
    fleet_->StartPeriphery("delta", {"tier=db"});
  }
  static void TearDownTestSuite() {
    delete fleet_;
    fleet_ = nullptr;
  }

  static RunResult Ctl(const std::vector<std::string>& args) {
    return fleet_->Ctl(args);
  }

  template <typename Message>
  static Message ParseJson(const std::string& json) {
    Message m;
    auto status = google::protobuf::util::JsonStringToMessage(json, &m);
    EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
    return m;
  }

  static TestFleet* fleet_;
};

TestFleet* CliTest::fleet_ = nullptr;

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// Every row has a column starting exactly where each of the header's first
// `columns` columns starts (columns are separated by two or more spaces).
void ExpectAligned(const std::string& table, size_t columns) {
  auto lines = Lines(table);
  ASSERT_GE(lines.size(), 2u) << table;
  const std::string& header = lines[0];
  std::vector<size_t> starts = {0};
  for (size_t i = 2; i < header.size() && starts.size() < columns; ++i) {
    if (header[i] != ' ' && header[i - 1] == ' ' && header[i - 2] == ' ') {
      starts.push_back(i);
    }
  }
  ASSERT_EQ(starts.size(), columns) << header;
  for (const auto& row : lines) {
    for (size_t s : starts) {
      ASSERT_LT(s, row.size()) << row;
      EXPECT_NE(row[s], ' ') << "column at " << s << " in: " << row;
      if (s > 0) {
        EXPECT_EQ(row[s - 1], ' ') << "column at " << s << ": " << row;
      }
    }
  }
}

TEST_F(CliTest, VersionShowsClientAndCore) {
  RunResult r = Ctl({"version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("varanctl ", kVersion, "\n")));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("varan-core ", kVersion, " at ",
                                            fleet_->core_address())));
  EXPECT_THAT(r.out, HasSubstr("4 of 4 peripheries online"));

  r = Ctl({"version", "-o", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto s = ParseJson<google::protobuf::Struct>(r.out);
  EXPECT_EQ(s.fields()
                .at("client")
                .struct_value()
                .fields()
                .at("version")
                .string_value(),
            kVersion);
  const auto& core = s.fields().at("core").struct_value().fields();
  EXPECT_EQ(core.at("version").string_value(), kVersion);
  EXPECT_EQ(core.at("peripheries").number_value(), 4);

  r = Ctl({"version", "-o", "yaml"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("client:\n  version: \""));
  EXPECT_THAT(r.out, HasSubstr("\n  peripheries_online: 4\n"));
}

// A fleet listed a page at a time comes out whole and in order: what
// varanctl and the client library rely on for fleets larger than a page.
TEST_F(CliTest, PeripheriesAreListedAPageAtATime) {
  auto whole = fleet_->client()->ListPeripheries({});
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ(whole->size(), 4u);
  auto paged = fleet_->client()->ListPeripheries({}, false, /*page_size=*/1);
  ASSERT_TRUE(paged.ok()) << paged.status();
  ASSERT_EQ(paged->size(), whole->size());
  for (size_t i = 0; i < whole->size(); ++i) {
    EXPECT_EQ((*paged)[i].id(), (*whole)[i].id()) << i;
  }

  // The bare RPC: a page of 3 of the 4 hands out a token, the next page has
  // the last one and none; a token core did not hand out is refused.
  auto channel = fleet_->Channel();
  auto stub = varan::v1::Fleet::NewStub(channel);
  auto list = [&](const std::string& token,
                  varan::v1::ListPeripheriesResponse* out) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(
        "authorization",
        absl::StrCat("Bearer ", absl::StripTrailingAsciiWhitespace(
                                    ReadFile(fleet_->admin_token_file()))));
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    varan::v1::ListPeripheriesRequest req;
    req.set_limit(3);
    req.set_page_token(token);
    return stub->ListPeripheries(&ctx, req, out);
  };
  varan::v1::ListPeripheriesResponse first, second, bad;
  ASSERT_TRUE(list("", &first).ok());
  EXPECT_EQ(first.peripheries_size(), 3);
  ASSERT_FALSE(first.next_page_token().empty());
  ASSERT_TRUE(list(first.next_page_token(), &second).ok());
  ASSERT_EQ(second.peripheries_size(), 1);
  EXPECT_EQ(second.peripheries(0).id(), whole->back().id());
  EXPECT_TRUE(second.next_page_token().empty());
  grpc::Status refused = list("bm90IGEgdG9rZW4", &bad);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("invalid page_token"));
}

TEST_F(CliTest, VersionWithUnreachableCorePrintsClientAndExits2) {
  const std::string address = absl::StrCat("127.0.0.1:", FreePort());
  RunResult r =
      RunProgram({BinPath("varanctl"), "--core", address, "--token-file",
                  fleet_->admin_token_file(), "version"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("varanctl ", kVersion)));
  EXPECT_THAT(r.err, HasSubstr("cannot reach core at " + address));
}

TEST_F(CliTest, PeripheriesListInEveryFormat) {
  RunResult r = Ctl({"peripheries", "list", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto resp = ParseJson<varan::v1::ListPeripheriesResponse>(r.out);
  ASSERT_EQ(resp.peripheries_size(), 4);
  EXPECT_EQ(resp.peripheries(0).name(), "alpha");
  // Original field names, RFC 3339 times.
  EXPECT_THAT(r.out, HasSubstr("\"peer_address\""));
  EXPECT_THAT(r.out, ::testing::ContainsRegex(
                         "\"last_seen\": \"20[0-9][0-9]-[0-9][0-9]-[0-9]"));

  r = Ctl({"peripheries", "list", "-o", "yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("peripheries:\n- "));
  EXPECT_THAT(r.out, HasSubstr("  name: alpha\n"));
  EXPECT_THAT(r.out, HasSubstr("  state: PERIPHERY_STATE_ONLINE\n"));
  EXPECT_THAT(r.out, HasSubstr("    tier: web\n"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("last_seen: \"20[0-9][0-9]-"));

  r = Ctl({"peripheries", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("PEER ADDRESS")));
  EXPECT_THAT(r.out, HasSubstr("s ago"));  // human times in tables
  ExpectAligned(r.out, 5);
  EXPECT_EQ(Lines(r.out).size(), 5u);

  r = Ctl({"peripheries", "list", "-o", "wide", "-l", "tier=web"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(Lines(r.out)[0], HasSubstr("PEER ADDRESS"));
  EXPECT_THAT(Lines(r.out)[0], HasSubstr("KERNEL"));
  ExpectAligned(r.out, 5);
  EXPECT_EQ(Lines(r.out).size(), 3u);

  r = Ctl({"peripheries", "get", "gamma", "-o", "yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\nname: gamma\n"));

  r = Ctl({"peripheries", "list", "-o", "xml"});
  EXPECT_EQ(r.exit_code, 2);
}

TEST_F(CliTest, JobsInEveryFormat) {
  RunResult r = Ctl({"exec", "--async", "-n", "alpha", "--", "echo", "hi"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string id(absl::StripTrailingAsciiWhitespace(r.out));
  ASSERT_TRUE(WaitFor([&] {
    auto job = fleet_->client()->GetJob(id);
    return job.ok() && job->state() == varan::v1::JOB_STATE_SUCCEEDED;
  }));

  r = Ctl({"jobs", "get", id, "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto job = ParseJson<varan::v1::Job>(r.out);
  EXPECT_EQ(job.id(), id);
  ASSERT_EQ(job.targets_size(), 1);
  // Output is no longer in the job: a preview of it is (jobs get asks for
  // one), and jobs logs reads it whole.
  EXPECT_EQ(job.targets(0).stdout_info().total_bytes(), 3u);
  EXPECT_EQ(job.targets(0).stdout_info().head(), "hi\n");

  r = Ctl({"jobs", "logs", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hi\n");

  r = Ctl({"jobs", "get", id, "-o", "yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("\nid: \"", id, "\"\n")));
  EXPECT_THAT(r.out, HasSubstr("state: JOB_STATE_SUCCEEDED\n"));
  EXPECT_THAT(r.out, HasSubstr("targets:\n- "));
  EXPECT_THAT(r.out, HasSubstr("\n  name: alpha\n"));
  EXPECT_THAT(r.out, HasSubstr("head: aGkK\n"));  // bytes: base64

  r = Ctl({"jobs", "list", "-o", "json", "--periphery", "alpha"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto list = ParseJson<varan::v1::ListJobsResponse>(r.out);
  ASSERT_GE(list.jobs_size(), 1);
  EXPECT_EQ(list.jobs(0).id(), id);

  r = Ctl({"jobs", "list", "-o", "wide", "--periphery", "alpha"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(Lines(r.out)[0], HasSubstr("FINISHED"));
  EXPECT_THAT(Lines(r.out)[0], HasSubstr("STORED"));
  ExpectAligned(r.out, 4);

  r = Ctl({"jobs", "cancel", id, "-o", "yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("state: JOB_STATE_SUCCEEDED\n"));
}

TEST_F(CliTest, GroupCollapsesIdenticalOutputs) {
  RunResult r =
      Ctl({"exec", "--all", "--group", "--shell", "--", kDeltaDiffers});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "==== alpha, beta, gamma (3) ====\nsame\n"
            "==== delta (1) ====\ndifferent\n");
  EXPECT_THAT(r.err, HasSubstr("4 of 4 succeeded"));
  // Not a terminal: no progress line, no colours.
  EXPECT_THAT(r.err, Not(HasSubstr("\r")));
  EXPECT_THAT(r.out + r.err, Not(HasSubstr("\033[")));

  // A different exit status makes a different block even with the same
  // output.
  r = Ctl({"exec", "-l", "tier=db", "--group", "--shell", "--",
           absl::StrCat("echo x; (", kDeltaDiffers,
                        ") | grep -q different && exit 3; exit 0")});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out,
            "==== delta (1) ====\nx\n---- exit 3 ----\n"
            "==== gamma (1) ====\nx\n");
}

TEST_F(CliTest, LivePrefixesAlignedOrOmitted) {
  RunResult r = Ctl(
      {"exec", "-n", "alpha", "-n", "delta", "-n", "beta", "--", "echo", "hi"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"alpha | hi", "beta  | hi",
                                             "delta | hi"}));

  r = Ctl({"exec", "--all", "--no-prefix", "--", "echo", "hi"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hi\nhi\nhi\nhi\n");
  EXPECT_THAT(r.err, Not(HasSubstr("\r")));
}

TEST_F(CliTest, ExitCodes) {
  // One target: its own code.
  RunResult r = Ctl({"exec", "-n", "beta", "--shell", "--", "exit 7"});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  // Several, all succeeding: 0; one failing: 1.
  r = Ctl({"exec", "-l", "tier=web", "--", "true"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Ctl({"exec", "--all", "--shell", "--",
           absl::StrCat("! (", kDeltaDiffers, ") | grep -q different")});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("3 of 4 succeeded; 1 failed"));
  // Usage: no targets, conflicting targets, unknown periphery.
  r = Ctl({"exec", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--all"));
  r = Ctl({"exec", "--all", "-n", "alpha", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  r = Ctl({"exec", "-n", "nosuch", "--", "true"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("nosuch"));
}

TEST_F(CliTest, DryRunListsMatchesAndRunsNothing) {
  auto before = fleet_->client()->ListJobs({});
  ASSERT_TRUE(before.ok());
  RunResult r = Ctl({"exec", "-l", "tier=web", "--dry-run", "--", "false"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_THAT(lines[1], ::testing::StartsWith("alpha "));
  EXPECT_THAT(lines[2], ::testing::StartsWith("beta "));
  EXPECT_THAT(r.err, HasSubstr("would run on 2 peripheries; nothing ran"));

  r = Ctl({"exec", "--all", "--dry-run", "--", "false"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(r.out).size(), 5u) << r.out;

  r = Ctl({"exec", "-n", "gamma", "-l", "tier=db", "--dry-run", "--", "x"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(r.out).size(), 2u) << r.out;

  auto after = fleet_->client()->ListJobs({});
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->jobs_size(), before->jobs_size());

  r = Ctl({"peripheries", "list", "--all", "-o", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(
      ParseJson<varan::v1::ListPeripheriesResponse>(r.out).peripheries_size(),
      4);
}

TEST_F(CliTest, ContextsSupplyCoreAndToken) {
  TempDir dir;
  const std::string config = dir.File("sub/config.toml");
  const std::map<std::string, std::string> env = {
      {"VARAN_CONFIG_FILE", config}};
  const std::string ctl = BinPath("varanctl");

  RunResult r = RunProgram(
      {ctl, "config", "set-context", "test", "--core", fleet_->core_address(),
       "--token-file", fleet_->admin_token_file(), "--ca-hash",
       fleet_->client_tls().ca_pin},
      env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunProgram(
      {ctl, "config", "set-context", "other", "--core", "127.0.0.1:1",
       "--token-file", "/nonexistent", "--tls-ca", "/ca.pem"},
      env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st;
  ASSERT_EQ(stat(config.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  r = RunProgram({ctl, "config", "use-context", "other"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunProgram({ctl, "config", "use-context", "nosuch"}, env);
  EXPECT_EQ(r.exit_code, 2);
  r = RunProgram({ctl, "config", "use-context", "test"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  r = RunProgram({ctl, "config", "get-contexts"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\\*  +test  +\\[::1\\]"));
  EXPECT_THAT(r.out, HasSubstr("/ca.pem"));

  // No --core, no --token-file: the current context's.
  r = RunProgram({ctl, "peripheries", "list", "-o", "json"}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(
      ParseJson<varan::v1::ListPeripheriesResponse>(r.out).peripheries_size(),
      4);

  // Flags and the environment win over the context.
  const std::string elsewhere = absl::StrCat("127.0.0.1:", FreePort());
  r = RunProgram({ctl, "--core", elsewhere, "peripheries", "list"}, env);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot reach core at " + elsewhere));
  auto env2 = env;
  env2["VARAN_CORE"] = elsewhere;
  r = RunProgram({ctl, "peripheries", "list"}, env2);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot reach core at " + elsewhere));
}

TEST_F(CliTest, WrongTokenIsExplained) {
  TempDir dir;
  WriteFile(dir.File("bad.token"), "not-the-token\n");
  ASSERT_EQ(chmod(dir.File("bad.token").c_str(), 0600), 0);
  RunResult r =
      RunProgram({BinPath("varanctl"), "--core", fleet_->core_address(),
                  "--ca-hash", fleet_->client_tls().ca_pin, "--token-file",
                  dir.File("bad.token"), "peripheries", "list"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("refused the token: unknown operator token"));
  EXPECT_THAT(r.err, HasSubstr("--token-file / VARAN_TOKEN"));
  EXPECT_EQ(Lines(r.err).size(), 1u) << r.err;
  // A token file others can read gets a warning first.
  ASSERT_EQ(chmod(dir.File("bad.token").c_str(), 0644), 0);
  RunResult loose =
      RunProgram({BinPath("varanctl"), "--core", fleet_->core_address(),
                  "--ca-hash", fleet_->client_tls().ca_pin, "--token-file",
                  dir.File("bad.token"), "peripheries", "list"});
  ASSERT_EQ(Lines(loose.err).size(), 2u) << loose.err;
  EXPECT_THAT(Lines(loose.err)[0],
              HasSubstr("varanctl: warning: " + dir.File("bad.token") +
                        " holds a secret but is accessible by group or "
                        "others (mode 0644); chmod 600 it"));
}

TEST_F(CliTest, BashCompletionIsValidAndGenerated) {
  RunResult r = RunProgram({BinPath("varanctl"), "completion", "bash"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_FALSE(r.out.empty());
  // From the app tree: nested subcommands and their flags.
  EXPECT_THAT(r.out, HasSubstr("[\"_ exec\"]="));
  EXPECT_THAT(r.out, HasSubstr("--dry-run"));
  EXPECT_THAT(r.out, HasSubstr("[\"_ config set-context\"]="));
  TempDir dir;
  WriteFile(dir.File("varanctl.bash"), r.out);
  RunResult check = RunProgram({"/bin/bash", "-n", dir.File("varanctl.bash")});
  EXPECT_EQ(check.exit_code, 0) << check.err;
  // And it completes: "varanctl jobs l<TAB>".
  RunResult complete =
      RunProgram({"/bin/bash", "-c",
                  "source \"$0\"; COMP_WORDS=(varanctl jobs l); COMP_CWORD=2; "
                  "_varanctl; echo \"${COMPREPLY[*]}\"",
                  dir.File("varanctl.bash")});
  EXPECT_EQ(complete.out, "list ls logs\n") << complete.err;
  // Flag values: "varanctl tokens create --role o<TAB>", "... -o y<TAB>".
  for (const auto& [words, expected] :
       std::vector<std::pair<std::string, std::string>>{
           {"varanctl tokens create --role o", "operator\n"},
           {"varanctl peripheries list -o y", "yaml\n"},
           {"varanctl jobs list --state s", "succeeded\n"}}) {
    RunResult value = RunProgram(
        {"/bin/bash", "-c",
         absl::StrCat("source \"$0\"; COMP_WORDS=(", words,
                      "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _varanctl; "
                      "echo \"${COMPREPLY[*]}\""),
         dir.File("varanctl.bash")});
    EXPECT_EQ(value.out, expected) << words << ": " << value.err;
  }
}

TEST_F(CliTest, NewSubcommandsHaveExamples) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"version", "--help"},
           {"completion", "--help"},
           {"config", "--help"},
           {"config", "set-context", "--help"},
           {"config", "use-context", "--help"},
           {"config", "get-contexts", "--help"}}) {
    std::vector<std::string> argv = {BinPath("varanctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    RunResult r = RunProgram(argv);
    EXPECT_EQ(r.exit_code, 0) << args[0];
    EXPECT_THAT(r.out, ::testing::ContainsRegex("Examples?:\n  .*varanctl "))
        << args[0];
  }
}

}  // namespace
}  // namespace varan::testing

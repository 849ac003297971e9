// Tests for the pure parts of client/cli/cli.h: names of enum values, label
// and duration parsing, relative times, and the output formats (table,
// wide, json, yaml) of peripheries and jobs.
#include "client/cli/cli.h"

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/time_util.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace varan::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// A fixed "now" for relative times.
const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

google::protobuf::Timestamp Before(absl::Duration d) {
  google::protobuf::Timestamp t;
  SetTimestamp(kNow - d, &t);
  return t;
}

TEST(NamesTest, PeripheryStates) {
  EXPECT_EQ(StateName(varan::v1::PERIPHERY_STATE_ONLINE), "online");
  EXPECT_EQ(StateName(varan::v1::PERIPHERY_STATE_OFFLINE), "offline");
  EXPECT_EQ(StateName(varan::v1::PERIPHERY_STATE_REMOVED), "removed");
  EXPECT_EQ(StateName(varan::v1::PERIPHERY_STATE_UNSPECIFIED), "unknown");
  // A state from a newer core.
  EXPECT_EQ(StateName(static_cast<varan::v1::PeripheryState>(42)), "unknown");
}

TEST(NamesTest, Connections) {
  EXPECT_EQ(ConnectionName(varan::v1::CONNECTION_DIAL), "dial");
  EXPECT_EQ(ConnectionName(varan::v1::CONNECTION_TUNNEL), "tunnel");
  EXPECT_EQ(ConnectionName(varan::v1::CONNECTION_UNSPECIFIED), "unknown");
  EXPECT_EQ(ConnectionName(static_cast<varan::v1::Connection>(42)), "unknown");
}

TEST(NamesTest, JobStates) {
  EXPECT_EQ(JobStateName(varan::v1::JOB_STATE_RUNNING), "running");
  EXPECT_EQ(JobStateName(varan::v1::JOB_STATE_SUCCEEDED), "succeeded");
  EXPECT_EQ(JobStateName(varan::v1::JOB_STATE_FAILED), "failed");
  EXPECT_EQ(JobStateName(varan::v1::JOB_STATE_CANCELED), "canceled");
  EXPECT_EQ(JobStateName(varan::v1::JOB_STATE_UNSPECIFIED), "unknown");
}

struct AgeCase {
  std::string text;
  absl::Duration want;  // zero: an error
};

class ParseAgeTest : public ::testing::TestWithParam<AgeCase> {};

TEST_P(ParseAgeTest, ParsesOrNamesTheText) {
  const AgeCase& c = GetParam();
  auto d = ParseAge(c.text);
  if (c.want == absl::ZeroDuration()) {
    ASSERT_FALSE(d.ok()) << c.text << " gave " << *d;
    EXPECT_TRUE(absl::IsInvalidArgument(d.status()));
    EXPECT_THAT(d.status().message(), HasSubstr("\"" + c.text + "\""));
  } else {
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(*d, c.want);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Ages, ParseAgeTest,
    ::testing::Values(
        AgeCase{"90s", absl::Seconds(90)}, AgeCase{"30m", absl::Minutes(30)},
        AgeCase{"1h", absl::Hours(1)}, AgeCase{"2d", absl::Hours(48)},
        AgeCase{"1h30m", absl::Minutes(90)}, AgeCase{"1d12h", absl::Hours(36)},
        AgeCase{"1.5h", absl::Minutes(90)}, AgeCase{"", absl::ZeroDuration()},
        AgeCase{"10", absl::ZeroDuration()}, AgeCase{"h", absl::ZeroDuration()},
        AgeCase{"5x", absl::ZeroDuration()},
        AgeCase{"0s", absl::ZeroDuration()},
        AgeCase{"-5m", absl::ZeroDuration()},
        AgeCase{"5m ", absl::ZeroDuration()}));

struct LabelCase {
  std::string name;
  std::vector<std::string> changes;
  std::map<std::string, std::string> set;
  std::vector<std::string> remove;
  std::string error;  // empty: accepted
};

class ParseLabelChangesTest : public ::testing::TestWithParam<LabelCase> {};

TEST_P(ParseLabelChangesTest, BuildsTheRequestOrRefuses) {
  const LabelCase& c = GetParam();
  auto req = ParseLabelChanges("web-1", c.changes);
  if (!c.error.empty()) {
    ASSERT_FALSE(req.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(req.status()));
    EXPECT_EQ(req.status().message(), c.error);
    return;
  }
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->name_or_id(), "web-1");
  const std::map<std::string, std::string> set(req->set().begin(),
                                               req->set().end());
  EXPECT_EQ(set, c.set);
  const std::vector<std::string> remove(req->remove().begin(),
                                        req->remove().end());
  EXPECT_EQ(remove, c.remove);
}

INSTANTIATE_TEST_SUITE_P(
    Changes, ParseLabelChangesTest,
    ::testing::Values(
        LabelCase{"SetAndRemove",
                  {"env=prod", "canary-"},
                  {{"env", "prod"}},
                  {"canary"},
                  ""},
        LabelCase{"EmptyValue", {"note="}, {{"note", ""}}, {}, ""},
        LabelCase{"ValueWithEquals", {"a=b=c"}, {{"a", "b=c"}}, {}, ""},
        LabelCase{
            "SameTwice", {"a=1", "a=1", "b-", "b-"}, {{"a", "1"}}, {"b"}, ""},
        LabelCase{"EmptyKey", {"=x"}, {}, {}, "\"=x\": the label key is empty"},
        LabelCase{"SetThenRemoved",
                  {"a=1", "a-"},
                  {},
                  {},
                  "label \"a\" is both set and removed"},
        LabelCase{"RemovedThenSet",
                  {"a-", "a=1"},
                  {},
                  {},
                  "label \"a\" is both set and removed"},
        LabelCase{"SetTwiceDifferently",
                  {"a=1", "a=2"},
                  {},
                  {},
                  "label \"a\" is set twice, to different values"},
        LabelCase{"Neither",
                  {"-"},
                  {},
                  {},
                  "\"-\": expected KEY=VALUE to set a label or KEY- to "
                  "remove one"}),
    [](const ::testing::TestParamInfo<LabelCase>& param) {
      return param.param.name;
    });

TEST(LabelsTextTest, SortedOrNone) {
  varan::v1::Periphery p;
  EXPECT_EQ(LabelsText(p.labels()), "<none>");
  (*p.mutable_labels())["tier"] = "web";
  (*p.mutable_labels())["env"] = "prod";
  EXPECT_EQ(LabelsText(p.labels()), "env=prod,tier=web");
}

TEST(AgoTest, RoundsDownToTheLargestUnit) {
  EXPECT_EQ(Ago(google::protobuf::Timestamp(), kNow), "never");
  EXPECT_EQ(Ago(Before(absl::Seconds(3)), kNow), "3s ago");
  EXPECT_EQ(Ago(Before(absl::Seconds(119)), kNow), "119s ago");
  EXPECT_EQ(Ago(Before(absl::Seconds(120)), kNow), "2m ago");
  EXPECT_EQ(Ago(Before(absl::Minutes(119)), kNow), "119m ago");
  EXPECT_EQ(Ago(Before(absl::Hours(5)), kNow), "5h ago");
  EXPECT_EQ(Ago(Before(absl::Hours(96)), kNow), "4d ago");
  // A clock behind core's.
  EXPECT_EQ(Ago(Before(-absl::Seconds(30)), kNow), "0s ago");
}

TEST(PrintTableTest, AlignsColumns) {
  std::ostringstream out;
  PrintTable(
      {{"NAME", "STATE", "X"}, {"web-10", "on", ""}, {"a", "offline", "y"}},
      out);
  EXPECT_EQ(out.str(),
            "NAME    STATE    X\n"
            "web-10  on       \n"
            "a       offline  y\n");
}

varan::v1::Periphery Tunnelled() {
  varan::v1::Periphery p;
  p.set_id("p-1");
  p.set_name("web-1");
  p.set_state(varan::v1::PERIPHERY_STATE_ONLINE);
  p.set_connection(varan::v1::CONNECTION_TUNNEL);
  p.set_address("");
  p.set_peer_address("[::1]:40000");
  (*p.mutable_labels())["env"] = "yes";
  *p.mutable_last_seen() = Before(absl::Seconds(4));
  p.set_version("0.1.0");
  p.mutable_facts()->set_os("Debian 12");
  p.mutable_facts()->set_kernel("6.1.0");
  p.mutable_facts()->set_arch("x86_64");
  return p;
}

TEST(PeripheryRowsTest, TableAndWide) {
  varan::v1::Periphery dial = Tunnelled();
  dial.set_name("db-1");
  dial.set_connection(varan::v1::CONNECTION_DIAL);
  dial.set_address("10.0.0.5:7701");
  dial.set_state(varan::v1::PERIPHERY_STATE_OFFLINE);
  dial.clear_labels();
  EXPECT_THAT(
      PeripheryRows({dial, Tunnelled()}, /*wide=*/false, kNow),
      ElementsAre(ElementsAre("NAME", "STATE", "CONNECTION", "ADDRESS",
                              "LABELS", "LAST SEEN", "VERSION", "OS"),
                  ElementsAre("db-1", "offline", "dial", "10.0.0.5:7701",
                              "<none>", "4s ago", "0.1.0", "Debian 12"),
                  ElementsAre("web-1", "online", "tunnel", "", "env=yes",
                              "4s ago", "0.1.0", "Debian 12")));
  EXPECT_THAT(PeripheryRows({Tunnelled()}, /*wide=*/true, kNow),
              ElementsAre(ElementsAre("NAME", "ID", "STATE", "CONNECTION",
                                      "ADDRESS", "PEER ADDRESS", "LABELS",
                                      "LAST SEEN", "VERSION", "OS", "KERNEL"),
                          ElementsAre("web-1", "p-1", "online", "tunnel", "",
                                      "[::1]:40000", "env=yes", "4s ago",
                                      "0.1.0", "Debian 12", "6.1.0 (x86_64)")));
}

google::protobuf::RepeatedPtrField<varan::v1::Job> Jobs() {
  google::protobuf::RepeatedPtrField<varan::v1::Job> jobs;
  varan::v1::Job* running = jobs.Add();
  running->set_id("j-2");
  running->set_state(varan::v1::JOB_STATE_RUNNING);
  running->set_created_by("alice");
  *running->mutable_create_time() = Before(absl::Seconds(30));
  running->mutable_spec()->set_shell("df -h / | tail -1");
  running->add_targets()->set_state(varan::v1::TARGET_STATE_RUNNING);
  varan::v1::Job* failed = jobs.Add();
  failed->set_id("j-1");
  failed->set_state(varan::v1::JOB_STATE_FAILED);
  failed->set_created_by("bob");
  *failed->mutable_create_time() = Before(absl::Hours(3));
  *failed->mutable_finish_time() = Before(absl::Minutes(150));
  failed->set_output_head_bytes(1 << 10);
  failed->set_output_tail_bytes(3 << 10);
  failed->set_capture_limit_bytes(4 << 10);
  failed->mutable_spec()->add_argv("uname");
  failed->mutable_spec()->add_argv("-a");
  for (auto state :
       {varan::v1::TARGET_STATE_EXITED, varan::v1::TARGET_STATE_EXITED,
        varan::v1::TARGET_STATE_LOST, varan::v1::TARGET_STATE_SKIPPED}) {
    varan::v1::JobTarget* t = failed->add_targets();
    t->set_state(state);
    t->mutable_exit_status()->set_kind(varan::v1::ExitStatus::KIND_EXITED);
  }
  failed->mutable_targets(1)->mutable_exit_status()->set_code(2);
  return jobs;
}

TEST(JobRowsTest, TableAndWide) {
  EXPECT_THAT(
      JobRows(Jobs(), /*wide=*/false, kNow),
      ElementsAre(
          ElementsAre("ID", "STATE", "TARGETS", "CREATED", "BY", "COMMAND"),
          ElementsAre("j-2", "running", "0/1 ok, 1 pending", "30s ago", "alice",
                      "df -h / | tail -1"),
          ElementsAre("j-1", "failed", "1/4 ok, 2 failed, 1 skipped", "3h ago",
                      "bob", "uname -a")));
  EXPECT_THAT(
      JobRows(Jobs(), /*wide=*/true, kNow),
      ElementsAre(
          ElementsAre("ID", "STATE", "TARGETS", "CREATED", "FINISHED", "BY",
                      "STORED", "COMMAND"),
          ElementsAre("j-2", "running", "0/1 ok, 1 pending", "30s ago", "-",
                      "alice", "default", "df -h / | tail -1"),
          ElementsAre("j-1", "failed", "1/4 ok, 2 failed, 1 skipped", "3h ago",
                      "2h ago", "bob", "1 KiB+3 KiB", "uname -a")));
}

TEST(PrintStructuredTest, TableAndWideAreNotStructured) {
  std::ostringstream out;
  EXPECT_FALSE(PrintStructured(Tunnelled(), "table", out));
  EXPECT_FALSE(PrintStructured(Tunnelled(), "wide", out));
  EXPECT_THAT(out.str(), IsEmpty());
}

TEST(PrintStructuredTest, JsonReadsBackWithEveryField) {
  varan::v1::ListPeripheriesResponse resp;
  *resp.add_peripheries() = Tunnelled();
  std::ostringstream out;
  ASSERT_TRUE(PrintStructured(resp, "json", out));
  const std::string text = out.str();
  // Original field names, enum names, and fields left at their defaults.
  EXPECT_THAT(text, HasSubstr("\"peer_address\": \"[::1]:40000\""));
  EXPECT_THAT(text, HasSubstr("\"connection\": \"CONNECTION_TUNNEL\""));
  EXPECT_THAT(text, HasSubstr("\"next_page_token\": \"\""));
  EXPECT_THAT(text, HasSubstr("\"address\": \"\""));
  EXPECT_EQ(text.back(), '\n');
  varan::v1::ListPeripheriesResponse back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(text, &back).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(back, resp));
}

TEST(PrintStructuredTest, YamlOfAJob) {
  varan::v1::ListJobsResponse resp;
  *resp.mutable_jobs() = Jobs();
  resp.set_next_page_token("tok");
  std::ostringstream out;
  ASSERT_TRUE(PrintStructured(resp, "yaml", out));
  const std::string text = out.str();
  // Keys sorted, the first key of a list item on the dash's line.
  EXPECT_THAT(text, HasSubstr("jobs:\n- canceled_by: \"\"\n"
                              "  capture_limit_bytes: \"0\"\n"));
  EXPECT_THAT(text, HasSubstr("\n  created_by: alice\n"));
  EXPECT_THAT(text, HasSubstr("\n  state: JOB_STATE_RUNNING\n"));
  EXPECT_THAT(text, HasSubstr("\n    shell: df -h / | tail -1\n"));
  EXPECT_THAT(text, HasSubstr("\n    argv:\n    - uname\n    - \"-a\"\n"));
  EXPECT_THAT(text, HasSubstr("\n  capture_limit_bytes: \"4096\"\n"));
  EXPECT_THAT(text, HasSubstr("\n  output_tail_bytes: \"3072\"\n"));
  EXPECT_THAT(text, HasSubstr("\nnext_page_token: tok\n"));
}

TEST(ToYamlTest, QuotesWhatWouldReadAsSomethingElse) {
  google::protobuf::Value v;
  auto& fields = *v.mutable_struct_value()->mutable_fields();
  for (const char* s : {"yes", "No", "null", "1.0", "", " x", "a: b", "-a",
                        "x #y", "plain", "tab\there", "é"}) {
    fields[s].set_string_value(s);
  }
  fields["n"].set_number_value(3);
  fields["f"].set_number_value(0.5);
  fields["b"].set_bool_value(true);
  fields["empty"].mutable_list_value();
  fields["none"].mutable_struct_value();
  EXPECT_EQ(ToYaml(v),
            "\"\": \"\"\n"
            "\" x\": \" x\"\n"
            "\"-a\": \"-a\"\n"
            "\"1.0\": \"1.0\"\n"
            "\"No\": \"No\"\n"  // keys are quoted alike: "No" is a bool
            "\"a: b\": \"a: b\"\n"
            "b: true\n"
            "empty: []\n"
            "f: 0.5\n"
            "\"n\": 3\n"  // n is a bool to YAML 1.1
            "none: {}\n"
            "\"null\": \"null\"\n"
            "plain: plain\n"
            "\"tab\\there\": \"tab\\there\"\n"
            "\"x #y\": \"x #y\"\n"
            "\"yes\": \"yes\"\n"
            "\"\xc3\xa9\": \"\xc3\xa9\"\n");
}

}  // namespace
}  // namespace varan::cli

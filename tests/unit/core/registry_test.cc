// Tests for core/fleet/registry.h: registration, heartbeats and liveness on
// a fake clock, and listing by name and selector.
#include "core/fleet/registry.h"

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/time_util.h"
#include "core/store/memory_store.h"
#include "core/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/temp_dir.h"

namespace varan::core {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kInterval = absl::Seconds(10);

class FleetRegistryTest : public ::testing::Test {
 protected:
  FleetRegistryTest()
      : registry_(&clock_, FleetOptions{kInterval, /*ttl_intervals=*/3},
                  &store_) {}

  static varan::v1::RegisterRequest Request(
      const std::string& name, std::map<std::string, std::string> labels = {},
      const std::string& address = "[fd00::5]:7701") {
    varan::v1::RegisterRequest req;
    req.set_name(name);
    req.mutable_labels()->insert(labels.begin(), labels.end());
    req.set_advertise_address(address);
    req.set_version("0.1.0");
    req.mutable_facts()->set_hostname(name + ".example");
    return req;
  }

  FleetRegistry::Registration MustRegister(
      const std::string& name, std::map<std::string, std::string> labels = {},
      const std::string& address = "[fd00::5]:7701") {
    auto reg = registry_.Register(Request(name, std::move(labels), address),
                                  "10.0.0.9");
    EXPECT_TRUE(reg.ok()) << reg.status();
    if (!reg.ok()) return FleetRegistry::Registration{};
    // A periphery heartbeats right after registering, confirming it.
    EXPECT_TRUE(registry_
                    .Heartbeat(reg->id, reg->credential, varan::v1::HostStats(),
                               "10.0.0.9")
                    .ok());
    return *reg;
  }

  varan::v1::Periphery MustGet(const std::string& name_or_id) {
    auto p = registry_.Get(name_or_id);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *p : varan::v1::Periphery{};
  }

  std::vector<std::string> ListNames(const varan::v1::Target& target) {
    auto list = registry_.List(target);
    EXPECT_TRUE(list.ok()) << list.status();
    std::vector<std::string> names;
    if (list.ok()) {
      for (const auto& p : *list) names.push_back(p.name());
    }
    return names;
  }

  static varan::v1::Target Selecting(const std::string& selector,
                                     std::vector<std::string> names = {}) {
    varan::v1::Target t;
    t.set_selector(selector);
    for (auto& n : names) t.add_names(n);
    return t;
  }

  FakeClock clock_;
  MemoryStore store_;
  FleetRegistry registry_;
};

TEST_F(FleetRegistryTest, RegisteredPeripheryIsListedOnline) {
  const absl::Time registered_at = clock_.Now();
  auto reg = MustRegister("web-1", {{"env", "prod"}});
  EXPECT_EQ(reg.id.size(), 16u);
  EXPECT_EQ(reg.credential.size(), 64u);

  auto list = registry_.List(varan::v1::Target());
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 1u);
  const varan::v1::Periphery& p = (*list)[0];
  EXPECT_EQ(p.id(), reg.id);
  EXPECT_EQ(p.name(), "web-1");
  EXPECT_EQ(p.state(), varan::v1::PERIPHERY_STATE_ONLINE);
  EXPECT_EQ(p.address(), "[fd00::5]:7701");
  EXPECT_EQ(p.peer_address(), "10.0.0.9");
  EXPECT_EQ(p.version(), "0.1.0");
  EXPECT_EQ(p.facts().hostname(), "web-1.example");
  EXPECT_EQ(p.labels().at("env"), "prod");
  EXPECT_EQ(FromTimestamp(p.first_seen()), registered_at);
  EXPECT_EQ(FromTimestamp(p.last_seen()), registered_at);
}

TEST_F(FleetRegistryTest, NotOnlineUntilAHeartbeatConfirmsTheRegistration) {
  // Until the periphery shows it holds its new credential, core must not
  // dial it: the periphery would refuse the call.
  auto reg =
      registry_.Register(Request("web-1", {}, "[fd00::5]:7701"), "10.0.0.9");
  ASSERT_TRUE(reg.ok()) << reg.status();
  EXPECT_EQ(MustGet("web-1").state(), varan::v1::PERIPHERY_STATE_OFFLINE);
  varan::v1::Target target;
  target.add_names("web-1");
  auto resolved = registry_.Resolve(target);
  ASSERT_TRUE(resolved.ok());
  EXPECT_FALSE((*resolved)[0].online);
  ASSERT_TRUE(registry_
                  .Heartbeat(reg->id, reg->credential, varan::v1::HostStats(),
                             "10.0.0.9")
                  .ok());
  EXPECT_EQ(MustGet("web-1").state(), varan::v1::PERIPHERY_STATE_ONLINE);
  EXPECT_TRUE((*registry_.Resolve(target))[0].online);
}

TEST_F(FleetRegistryTest, GoesOfflineAfterThreeMissedIntervals) {
  MustRegister("web-1");
  clock_.Advance(3 * kInterval);
  EXPECT_EQ(MustGet("web-1").state(), varan::v1::PERIPHERY_STATE_ONLINE);
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(MustGet("web-1").state(), varan::v1::PERIPHERY_STATE_OFFLINE);
  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(MustGet("web-1").state(), varan::v1::PERIPHERY_STATE_OFFLINE);
}

TEST_F(FleetRegistryTest, HeartbeatBringsItBackOnline) {
  auto reg = MustRegister("web-1");
  clock_.Advance(5 * kInterval);
  ASSERT_EQ(MustGet("web-1").state(), varan::v1::PERIPHERY_STATE_OFFLINE);

  varan::v1::HostStats stats;
  stats.set_load1(0.5);
  stats.set_uptime_seconds(1234);
  ASSERT_TRUE(
      registry_.Heartbeat(reg.id, reg.credential, stats, "10.0.0.10").ok());
  varan::v1::Periphery p = MustGet("web-1");
  EXPECT_EQ(p.state(), varan::v1::PERIPHERY_STATE_ONLINE);
  EXPECT_EQ(p.stats().uptime_seconds(), 1234u);
  EXPECT_DOUBLE_EQ(p.stats().load1(), 0.5);
  EXPECT_EQ(p.peer_address(), "10.0.0.10");
  EXPECT_EQ(FromTimestamp(p.last_seen()), clock_.Now());
  EXPECT_LT(FromTimestamp(p.first_seen()), clock_.Now());
}

TEST_F(FleetRegistryTest, HeartbeatErrors) {
  auto reg = MustRegister("web-1");
  absl::Status unknown = registry_.Heartbeat("no-such-id", reg.credential,
                                             varan::v1::HostStats(), "x");
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);

  absl::Status wrong = registry_.Heartbeat(reg.id, "not-the-credential",
                                           varan::v1::HostStats(), "x");
  EXPECT_EQ(wrong.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(wrong.message()), Not(HasSubstr(reg.credential)));

  absl::Status empty =
      registry_.Heartbeat(reg.id, "", varan::v1::HostStats(), "x");
  EXPECT_EQ(empty.code(), absl::StatusCode::kUnauthenticated);

  // A rejected heartbeat does not keep the periphery alive.
  clock_.Advance(4 * kInterval);
  EXPECT_FALSE(
      registry_.Heartbeat(reg.id, "bad", varan::v1::HostStats(), "x").ok());
  EXPECT_EQ(MustGet("web-1").state(), varan::v1::PERIPHERY_STATE_OFFLINE);
}

TEST_F(FleetRegistryTest, ReRegisteringKeepsTheIdAndReplacesTheCredential) {
  const absl::Time first_seen = clock_.Now();
  // Registered, but the answer never arrived (no heartbeat confirmed it):
  // the periphery registers again.
  auto first_reg =
      registry_.Register(Request("web-1", {{"env", "dev"}}), "10.0.0.9");
  ASSERT_TRUE(first_reg.ok());
  const FleetRegistry::Registration first = *first_reg;
  clock_.Advance(absl::Minutes(5));
  auto second = MustRegister("web-1", {{"env", "prod"}}, "10.0.0.5:7701");
  EXPECT_EQ(second.id, first.id);
  EXPECT_NE(second.credential, first.credential);

  EXPECT_EQ(
      registry_
          .Heartbeat(first.id, first.credential, varan::v1::HostStats(), "x")
          .code(),
      absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(
      registry_
          .Heartbeat(second.id, second.credential, varan::v1::HostStats(), "x")
          .ok());

  auto list = registry_.List(varan::v1::Target());
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].labels().at("env"), "prod");
  EXPECT_EQ((*list)[0].address(), "10.0.0.5:7701");
  EXPECT_EQ(FromTimestamp((*list)[0].first_seen()), first_seen);
}

TEST_F(FleetRegistryTest, AConfirmedPeripheryCannotBeTakenOverByName) {
  auto first = MustRegister("web-1");
  ASSERT_TRUE(
      registry_
          .Heartbeat(first.id, first.credential, varan::v1::HostStats(), "x")
          .ok());
  // Someone else with a join token asks for the same name: refused, and the
  // holder of the credential keeps working.
  auto taken =
      registry_.Register(Request("web-1", {}, "[fd00::9]:7701"), "10.0.0.66");
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(taken.status().message()),
              ::testing::HasSubstr("varanctl peripheries remove web-1"));
  EXPECT_TRUE(registry_.CheckCredential(first.id, first.credential).ok());
  EXPECT_EQ(MustGet("web-1").address(), "[fd00::5]:7701");

  // A credential is bound to its periphery.
  auto other = MustRegister("web-2");
  EXPECT_EQ(registry_.CheckCredential(other.id, first.credential).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(
      registry_
          .Heartbeat(other.id, first.credential, varan::v1::HostStats(), "x")
          .code(),
      absl::StatusCode::kUnauthenticated);

  // Once an operator removed it, the credential is dead and the name free.
  ASSERT_TRUE(registry_.Remove("web-1").ok());
  EXPECT_EQ(registry_.CheckCredential(first.id, first.credential).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(
      registry_
          .Heartbeat(first.id, first.credential, varan::v1::HostStats(), "x")
          .code(),
      absl::StatusCode::kNotFound);
  EXPECT_TRUE(
      registry_.Register(Request("web-1", {}, "[fd00::9]:7701"), "10.0.0.66")
          .ok());
}

TEST_F(FleetRegistryTest, RejectsInvalidRegistrations) {
  struct Case {
    std::string label;
    varan::v1::RegisterRequest req;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {"empty name", Request(""), "periphery name"},
      {"name starting with -", Request("-web"), "periphery name"},
      {"name with space", Request("web 1"), "periphery name"},
      {"name with slash", Request("web/1"), "periphery name"},
      {"name too long", Request(std::string(64, 'w')), "periphery name"},
      {"bad label key", Request("web-1", {{"bad key", "x"}}), "bad key"},
      {"bad label prefix", Request("web-1", {{"Ex.com/k", "x"}}), "Ex.com/k"},
      {"bad label value", Request("web-1", {{"env", "-x"}}), "-x"},
      {"no address", Request("web-1", {}, ""), "advertise address"},
      {"address without port", Request("web-1", {}, "10.0.0.5"),
       "advertise address"},
      {"unbracketed IPv6", Request("web-1", {}, "fd00::5:7701"),
       "advertise address"},
      {"wildcard address", Request("web-1", {}, "[::]:7701"),
       "advertise address"},
      {"port 0", Request("web-1", {}, "10.0.0.5:0"), "advertise address"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    auto reg = registry_.Register(c.req, "10.0.0.9");
    ASSERT_FALSE(reg.ok());
    EXPECT_EQ(reg.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(reg.status().message()), HasSubstr(c.message_part));
  }
  auto list = registry_.List(varan::v1::Target());
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_F(FleetRegistryTest, ValidPeripheryNames) {
  const std::vector<std::string> names = {"a", "web-1", "Web_1.example", "9",
                                          std::string(63, 'w')};
  for (const auto& name : names) {
    EXPECT_TRUE(ValidatePeripheryName(name).ok()) << name;
  }
}

TEST_F(FleetRegistryTest, ListIsSortedByName) {
  for (const char* name : {"charlie", "alpha", "delta", "bravo"}) {
    MustRegister(name);
  }
  EXPECT_EQ(ListNames(varan::v1::Target()),
            (std::vector<std::string>{"alpha", "bravo", "charlie", "delta"}));
}

TEST_F(FleetRegistryTest, ListByNames) {
  for (const char* name : {"a", "b", "c"}) MustRegister(name);
  EXPECT_EQ(ListNames(Selecting("", {"c", "a"})),
            (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(ListNames(Selecting("", {"b", "b"})),
            (std::vector<std::string>{"b"}));
}

TEST_F(FleetRegistryTest, ListByUnknownNameIsNotFoundNamingIt) {
  MustRegister("a");
  auto one = registry_.List(Selecting("", {"a", "nope"}));
  EXPECT_EQ(one.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(one.status().message()), HasSubstr("nope"));

  auto two = registry_.List(Selecting("", {"zzz", "a", "yyy"}));
  EXPECT_EQ(two.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(two.status().message()), HasSubstr("yyy"));
  EXPECT_THAT(std::string(two.status().message()), HasSubstr("zzz"));
}

TEST_F(FleetRegistryTest, ListBySelector) {
  MustRegister("db-1", {{"env", "prod"}, {"tier", "db"}});
  MustRegister("web-1", {{"env", "prod"}, {"tier", "web"}});
  MustRegister("web-2", {{"env", "dev"}, {"tier", "web"}});
  MustRegister("bare");

  EXPECT_EQ(ListNames(Selecting("env=prod")),
            (std::vector<std::string>{"db-1", "web-1"}));
  EXPECT_EQ(ListNames(Selecting("tier=web,env!=prod")),
            (std::vector<std::string>{"web-2"}));
  EXPECT_EQ(ListNames(Selecting("!env")), (std::vector<std::string>{"bare"}));
  EXPECT_EQ(ListNames(Selecting("env notin (dev)")),
            (std::vector<std::string>{"bare", "db-1", "web-1"}));
  EXPECT_TRUE(ListNames(Selecting("env=staging")).empty());
  // Names and selector must both hold.
  EXPECT_EQ(ListNames(Selecting("tier=web", {"db-1", "web-2"})),
            (std::vector<std::string>{"web-2"}));

  auto bad = registry_.List(Selecting("env in prod"));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

// Follows ListPage's tokens from the first page to the last; the pages'
// names joined by '|'.
std::vector<std::string> PageNames(const FleetRegistry& registry,
                                   const varan::v1::Target& target,
                                   bool include_removed, size_t limit) {
  std::vector<std::string> pages;
  std::string token;
  do {
    auto page = registry.ListPage(target, include_removed, token, limit);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok() || pages.size() > 100) break;
    std::vector<std::string> names;
    for (const auto& p : page->peripheries()) {
      names.push_back(p.state() == varan::v1::PERIPHERY_STATE_REMOVED
                          ? p.name() + "(removed)"
                          : p.name());
    }
    pages.push_back(absl::StrJoin(names, ","));
    token = page->next_page_token();
  } while (!token.empty());
  return pages;
}

TEST_F(FleetRegistryTest, ListPageWalksTheFleetInPages) {
  for (const char* name : {"e", "a", "d", "b", "c"}) MustRegister(name);
  EXPECT_EQ(PageNames(registry_, Selecting(""), false, 2),
            (std::vector<std::string>{"a,b", "c,d", "e"}));
  // A page that ends the list exactly has no next token.
  EXPECT_EQ(PageNames(registry_, Selecting(""), false, 5),
            (std::vector<std::string>{"a,b,c,d,e"}));
  EXPECT_EQ(PageNames(registry_, Selecting("", {"e", "b", "c"}), false, 2),
            (std::vector<std::string>{"b,c", "e"}));
  // A limit of 0 is taken as 1, never as an endless list of empty pages.
  EXPECT_EQ(PageNames(registry_, Selecting("", {"a", "b"}), false, 0),
            (std::vector<std::string>{"a", "b"}));
}

TEST_F(FleetRegistryTest, ListPageIsNotShiftedByChangesBetweenPages) {
  for (const char* name : {"a", "b", "c", "d"}) MustRegister(name);
  auto first = registry_.ListPage(Selecting(""), false, "", 2);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->peripheries_size(), 2);
  EXPECT_EQ(first->peripheries(1).name(), "b");
  // Between pages, one listed periphery goes, and one arrives before and
  // one after the token's position.
  ASSERT_TRUE(registry_.Remove("a").ok());
  MustRegister("aa");
  MustRegister("bb");
  auto second =
      registry_.ListPage(Selecting(""), false, first->next_page_token(), 2);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->peripheries_size(), 2);
  EXPECT_EQ(second->peripheries(0).name(), "bb");
  EXPECT_EQ(second->peripheries(1).name(), "c");
  // Even the page's last periphery going away does not lose the place.
  ASSERT_TRUE(registry_.Remove("c").ok());
  auto third =
      registry_.ListPage(Selecting(""), false, second->next_page_token(), 2);
  ASSERT_TRUE(third.ok()) << third.status();
  ASSERT_EQ(third->peripheries_size(), 1);
  EXPECT_EQ(third->peripheries(0).name(), "d");
  EXPECT_TRUE(third->next_page_token().empty());
}

TEST_F(FleetRegistryTest, ListPageKeepsRemovedPeripheriesOfTheSameNameApart) {
  MustRegister("a");
  MustRegister("b");
  ASSERT_TRUE(registry_.Remove("b").ok());
  MustRegister("b");  // a new periphery under the old name
  ASSERT_TRUE(registry_.Remove("b").ok());
  MustRegister("b");
  MustRegister("c");
  // Live "b" first, then its two removed predecessors (by id), one page
  // boundary between them.
  auto pages = PageNames(registry_, Selecting(""), true, 2);
  EXPECT_EQ(pages,
            (std::vector<std::string>{"a,b", "b(removed),b(removed)", "c"}));
  EXPECT_EQ(PageNames(registry_, Selecting(""), false, 2),
            (std::vector<std::string>{"a,b", "c"}));
}

TEST_F(FleetRegistryTest, ListPageRejectsTokensItDidNotHandOut) {
  MustRegister("a");
  const std::vector<std::string> tokens = {"not base64!", "YQ" /* "a" */,
                                           "YQphCmI" /* "a\na\nb" */,
                                           std::string(5000, 'A')};
  for (const std::string& token : tokens) {
    auto page = registry_.ListPage(Selecting(""), false, token, 10);
    EXPECT_EQ(page.status().code(), absl::StatusCode::kInvalidArgument)
        << token.substr(0, 20);
    EXPECT_THAT(std::string(page.status().message()),
                HasSubstr("invalid page_token"));
  }
  // Selector errors still come first-class.
  auto bad = registry_.ListPage(Selecting("env in prod"), false, "", 10);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(FleetRegistryTest, OfflinePeripheriesAreStillListed) {
  MustRegister("old");
  clock_.Advance(10 * kInterval);
  MustRegister("new");
  auto list = registry_.List(varan::v1::Target());
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name(), "new");
  EXPECT_EQ((*list)[0].state(), varan::v1::PERIPHERY_STATE_ONLINE);
  EXPECT_EQ((*list)[1].name(), "old");
  EXPECT_EQ((*list)[1].state(), varan::v1::PERIPHERY_STATE_OFFLINE);
}

TEST_F(FleetRegistryTest, GetByNameOrId) {
  auto reg = MustRegister("web-1");
  EXPECT_EQ(MustGet("web-1").id(), reg.id);
  EXPECT_EQ(MustGet(reg.id).name(), "web-1");
  auto missing = registry_.Get("web-2");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("web-2"));
}

TEST_F(FleetRegistryTest, ResolveReturnsAddressAndCredential) {
  auto a = MustRegister("a", {{"env", "prod"}}, "[fd00::1]:7701");
  clock_.Advance(4 * kInterval);
  auto b = MustRegister("b", {{"env", "prod"}}, "10.0.0.2:7701");
  MustRegister("c", {{"env", "dev"}}, "c.example:7701");

  auto targets = registry_.Resolve(Selecting("env=prod"));
  ASSERT_TRUE(targets.ok()) << targets.status();
  ASSERT_EQ(targets->size(), 2u);
  const DialTarget& ta = (*targets)[0];
  EXPECT_EQ(ta.id, a.id);
  EXPECT_EQ(ta.name, "a");
  EXPECT_EQ(ta.address, "[fd00::1]:7701");
  EXPECT_EQ(ta.credential, a.credential);
  EXPECT_FALSE(ta.online);
  EXPECT_EQ(ta.last_seen, clock_.Now() - 4 * kInterval);
  const DialTarget& tb = (*targets)[1];
  EXPECT_EQ(tb.id, b.id);
  EXPECT_EQ(tb.address, "10.0.0.2:7701");
  EXPECT_EQ(tb.credential, b.credential);
  EXPECT_TRUE(tb.online);
  EXPECT_EQ(tb.last_seen, clock_.Now());

  EXPECT_EQ(registry_.Resolve(Selecting("", {"nope"})).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(FleetRegistryTest, IdsAreDistinctPerName) {
  auto a = MustRegister("a");
  auto b = MustRegister("b");
  EXPECT_NE(a.id, b.id);
  EXPECT_NE(a.credential, b.credential);
}

TEST_F(FleetRegistryTest, TickReportsEachPeripheryGoingOfflineOnce) {
  std::vector<std::string> gone;
  registry_.SetGoneListener(
      [&gone](const std::string& id, const std::string& reason) {
        gone.push_back(id + ": " + reason);
      });
  auto a = MustRegister("a");
  registry_.Tick();
  EXPECT_TRUE(gone.empty());
  clock_.Advance(3 * kInterval);  // exactly the TTL: still online
  registry_.Tick();
  EXPECT_TRUE(gone.empty());
  clock_.Advance(absl::Seconds(1));
  registry_.Tick();
  registry_.Tick();
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_THAT(gone[0], HasSubstr(a.id + ": periphery a went offline"));
  EXPECT_THAT(gone[0], HasSubstr("TTL 30s"));
  // Back online, then offline again: reported again.
  ASSERT_TRUE(registry_.Heartbeat(a.id, a.credential, {}, "::1").ok());
  EXPECT_EQ(MustGet("a").state(), varan::v1::PERIPHERY_STATE_ONLINE);
  clock_.Advance(4 * kInterval);
  registry_.Tick();
  EXPECT_EQ(gone.size(), 2u);
}

TEST_F(FleetRegistryTest, RemoveRevokesTheCredentialAndHidesThePeriphery) {
  std::vector<std::string> gone;
  registry_.SetGoneListener([&gone](const std::string& id, const std::string&) {
    gone.push_back(id);
  });
  auto a = MustRegister("a", {{"env", "prod"}});
  auto removed = registry_.Remove("a");
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->state(), varan::v1::PERIPHERY_STATE_REMOVED);
  EXPECT_THAT(gone, ::testing::ElementsAre(a.id));
  EXPECT_EQ(registry_.Heartbeat(a.id, a.credential, {}, "::1").code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(registry_.List(Selecting(""))->empty());
  auto with_removed = registry_.List(Selecting(""), /*include_removed=*/true);
  ASSERT_EQ(with_removed->size(), 1u);
  EXPECT_EQ((*with_removed)[0].state(), varan::v1::PERIPHERY_STATE_REMOVED);
  EXPECT_TRUE(registry_.Resolve(Selecting("env=prod"))->empty());
  EXPECT_EQ(registry_.Remove("a").status().code(), absl::StatusCode::kNotFound);
  // Registering again makes a new periphery.
  auto again = MustRegister("a");
  EXPECT_NE(again.id, a.id);
  EXPECT_EQ(MustGet("a").state(), varan::v1::PERIPHERY_STATE_ONLINE);
}

TEST_F(FleetRegistryTest, UpdateLabelsOverridesReportedLabels) {
  // Not confirmed yet, so that it may register again below.
  ASSERT_TRUE(
      registry_.Register(Request("a", {{"env", "dev"}, {"tier", "web"}}), "x")
          .ok());
  varan::v1::UpdateLabelsRequest req;
  req.set_name_or_id("a");
  (*req.mutable_set())["env"] = "prod";
  (*req.mutable_set())["owner"] = "ops";
  req.add_remove("tier");
  auto p = registry_.UpdateLabels(req);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->labels().at("env"), "prod");
  EXPECT_EQ(p->labels().at("owner"), "ops");
  EXPECT_FALSE(p->labels().contains("tier"));
  EXPECT_EQ(p->reported_labels().at("env"), "dev");
  EXPECT_EQ(registry_.List(Selecting("env=prod,!tier"))->size(), 1u);
  // The periphery registering again with its own labels keeps the changes.
  MustRegister("a", {{"env", "dev"}, {"tier", "web"}, {"zone", "b"}});
  auto after = MustGet("a");
  EXPECT_EQ(after.labels().at("env"), "prod");
  EXPECT_EQ(after.labels().at("zone"), "b");
  EXPECT_FALSE(after.labels().contains("tier"));
}

TEST_F(FleetRegistryTest, UpdateLabelsRejectsBadRequests) {
  MustRegister("a");
  struct Case {
    std::string name_or_id;
    std::map<std::string, std::string> set;
    std::vector<std::string> remove;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"nope", {{"k", "v"}}, {}, absl::StatusCode::kNotFound, "nope"},
      {"a",
       {{"bad key!", "v"}},
       {},
       absl::StatusCode::kInvalidArgument,
       "bad key!"},
      {"a",
       {{"k", "bad value!"}},
       {},
       absl::StatusCode::kInvalidArgument,
       "bad value!"},
      {"a",
       {{"k", "v"}},
       {"k"},
       absl::StatusCode::kInvalidArgument,
       "both set and removed"},
  };
  for (const Case& c : cases) {
    varan::v1::UpdateLabelsRequest req;
    req.set_name_or_id(c.name_or_id);
    req.mutable_set()->insert(c.set.begin(), c.set.end());
    for (const auto& k : c.remove) req.add_remove(k);
    auto p = registry_.UpdateLabels(req);
    EXPECT_EQ(p.status().code(), c.code) << c.message;
    EXPECT_THAT(std::string(p.status().message()), HasSubstr(c.message));
  }
}

// With a store: what survives a restart, and the grace period after it.
class FleetPersistenceTest : public ::testing::Test {
 protected:
  std::unique_ptr<FleetRegistry> Start() {
    auto store = SqliteStore::Open(dir_.path() + "/core.db", {});
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto registry = std::make_unique<FleetRegistry>(
        &clock_,
        FleetOptions{kInterval, 3, /*restart_grace=*/absl::Minutes(2),
                     absl::Seconds(30)},
        store_.get());
    EXPECT_TRUE(registry->Load().ok());
    return registry;
  }
  void Stop(std::unique_ptr<FleetRegistry> registry) {
    registry.reset();
    EXPECT_TRUE(store_->Sync().ok());
    store_.reset();
  }

  FakeClock clock_;
  varan::testing::UnitTempDir dir_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(FleetPersistenceTest, FleetSurvivesARestartWithAGracePeriod) {
  auto registry = Start();
  varan::v1::RegisterRequest req;
  req.set_name("web-1");
  (*req.mutable_labels())["env"] = "dev";
  req.set_advertise_address("[fd00::5]:7701");
  req.mutable_facts()->set_hostname("web-1.example");
  auto reg = registry->Register(req, "fd00::5");
  ASSERT_TRUE(reg.ok());
  ASSERT_TRUE(
      registry->Heartbeat(reg->id, reg->credential, {}, "fd00::5").ok());
  req.set_name("quiet");
  auto quiet = registry->Register(req, "fd00::6");  // never confirmed
  ASSERT_TRUE(quiet.ok());
  varan::v1::UpdateLabelsRequest labels;
  labels.set_name_or_id("web-1");
  (*labels.mutable_set())["env"] = "prod";
  ASSERT_TRUE(registry->UpdateLabels(labels).ok());
  Stop(std::move(registry));

  // Core is down for ten minutes, far past the TTL.
  clock_.Advance(absl::Minutes(10));
  registry = Start();
  std::vector<std::string> gone;
  registry->SetGoneListener([&gone](const std::string& id, const std::string&) {
    gone.push_back(id);
  });
  auto p = registry->Get("web-1");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->id(), reg->id);
  EXPECT_EQ(p->labels().at("env"), "prod");
  EXPECT_EQ(p->facts().hostname(), "web-1.example");
  EXPECT_EQ(p->address(), "[fd00::5]:7701");
  // Online during the grace period, not before it was ever confirmed.
  EXPECT_EQ(p->state(), varan::v1::PERIPHERY_STATE_ONLINE);
  EXPECT_EQ(registry->Get("quiet")->state(),
            varan::v1::PERIPHERY_STATE_OFFLINE);
  // The credential survives: heartbeats go on without re-registering.
  clock_.Advance(absl::Minutes(1));
  registry->Tick();
  EXPECT_TRUE(gone.empty());
  // Silent past the grace period: offline, reported once.
  clock_.Advance(absl::Minutes(1) + absl::Seconds(1));
  registry->Tick();
  EXPECT_THAT(gone, ::testing::ElementsAre(reg->id));
  EXPECT_EQ(registry->Get("web-1")->state(),
            varan::v1::PERIPHERY_STATE_OFFLINE);
  EXPECT_TRUE(
      registry->Heartbeat(reg->id, reg->credential, {}, "fd00::5").ok());
  EXPECT_EQ(registry->Get("web-1")->state(), varan::v1::PERIPHERY_STATE_ONLINE);
  Stop(std::move(registry));
}

TEST_F(FleetPersistenceTest, RemovalSurvivesARestart) {
  auto registry = Start();
  varan::v1::RegisterRequest req;
  req.set_name("old");
  req.set_advertise_address("[::1]:7701");
  auto reg = registry->Register(req, "::1");
  ASSERT_TRUE(reg.ok());
  ASSERT_TRUE(registry->Remove("old").ok());
  Stop(std::move(registry));
  registry = Start();
  EXPECT_EQ(registry->Get("old").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry->Get(reg->id)->state(),
            varan::v1::PERIPHERY_STATE_REMOVED);
  EXPECT_EQ(registry->Heartbeat(reg->id, reg->credential, {}, "::1").code(),
            absl::StatusCode::kNotFound);
  Stop(std::move(registry));
}

}  // namespace
}  // namespace varan::core

// The Store contract for stored output (the "Output" rules of
// core/store/store.h), in the contract suite (StoreContractTest,
// store_contract.h), so every backend runs it: head and tail kept, the
// middle counted, duplicates and holes, reads from any offset, errors,
// retention, independence from events.
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/store/store_contract.h"
#include "tests/unit/store/store_test_util.h"

namespace varan::core {
namespace {

using ::testing::HasSubstr;
using varan::v1::OUTPUT_STREAM_STDERR;
using varan::v1::OUTPUT_STREAM_STDOUT;
using varan::v1::OUTPUT_STREAM_UNSPECIFIED;
using namespace store_test;  // NOLINT: the shared test records and fixture

constexpr uint64_t kAll = UINT64_MAX;

OutputKey Key(const std::string& job, const std::string& target = "p1",
              varan::v1::OutputStream stream = OUTPUT_STREAM_STDOUT) {
  return OutputKey{job, target, stream};
}

// Byte i of every test stream, so any range can be checked.
std::string Bytes(uint64_t from, uint64_t to) {
  std::string s;
  for (uint64_t i = from; i < to; ++i)
    s.push_back(static_cast<char>('a' + i % 26));
  return s;
}

std::vector<std::pair<uint64_t, std::string>> Pieces(const StoredOutput& out) {
  std::vector<std::pair<uint64_t, std::string>> v;
  for (const OutputPiece& p : out.pieces) v.emplace_back(p.offset, p.data);
  return v;
}

// Appends and waits for the commit; returns the write's status.
absl::Status Append(Store& store, const OutputKey& key, uint64_t offset,
                    const std::string& data, OutputRetention retention) {
  absl::Status result = absl::UnknownError("callback not run");
  store.AppendOutput(key, offset, data, retention,
                     [&](const absl::Status& s) { result = s; });
  const absl::Status sync = store.Sync();
  EXPECT_EQ(sync, result);
  return result;
}

void ExpectExtent(const OutputExtent& e, uint64_t end, uint64_t head_end,
                  uint64_t tail_start, uint64_t stored) {
  EXPECT_EQ(e.end, end);
  EXPECT_EQ(e.head_end, head_end);
  EXPECT_EQ(e.tail_start, tail_start);
  EXPECT_EQ(e.stored, stored);
}

TEST_P(StoreContractTest, OutputKeepsTheHeadAndTheTailAndCountsTheMiddle) {
  struct Case {
    std::string name;
    OutputRetention retention;
    std::vector<uint64_t> appends;  // sizes, each right after the last
  };
  const std::vector<Case> cases = {
      {"fits whole", {10, 20}, {3, 4, 5}},
      {"one large append", {4, 6}, {100}},
      {"byte by byte", {4, 6}, std::vector<uint64_t>(40, 1)},
      {"appends larger than the tail", {5, 3}, {7, 9, 11, 2}},
      {"an append straddling the head", {8, 8}, {3, 10, 1, 1, 20}},
      {"head only", {6, 0}, {4, 4, 4}},
      {"tail only", {0, 6}, {4, 4, 4}},
      {"nothing kept", {0, 0}, {4, 4}},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    Store& store = Open();
    const std::string id = JobId(1);
    CreateAll(store, {MakeJob(id, kRunning, kT0)});
    uint64_t end = 0;
    for (uint64_t size : tc.appends) {
      ASSERT_TRUE(
          Append(store, Key(id), end, Bytes(end, end + size), tc.retention)
              .ok());
      end += size;
      const uint64_t head_end = std::min(end, tc.retention.head_bytes);
      const uint64_t tail_start = std::max(
          end > tc.retention.tail_bytes ? end - tc.retention.tail_bytes : 0,
          head_end);
      auto out = store.ReadOutput(Key(id), 0, kAll);
      ASSERT_TRUE(out.ok()) << out.status();
      ExpectExtent(out->extent, end, head_end, tail_start,
                   head_end + (end - tail_start));
      // The kept ranges, merged when they touch.
      std::vector<std::pair<uint64_t, std::string>> want;
      for (const auto& [b, e] :
           {std::pair{uint64_t{0}, head_end}, std::pair{tail_start, end}}) {
        if (e <= b) continue;
        if (!want.empty() &&
            want.back().first + want.back().second.size() == b) {
          want.back().second += Bytes(b, e);
        } else {
          want.emplace_back(b, Bytes(b, e));
        }
      }
      EXPECT_EQ(Pieces(*out), want) << "after " << end << " bytes";
    }
  }
}

TEST_P(StoreContractTest, OutputDuplicateBytesAreStoredOnce) {
  Store& store = Open();
  const std::string id = JobId(1);
  CreateAll(store, {MakeJob(id, kRunning, kT0)});
  const OutputRetention r{100, 100};
  ASSERT_TRUE(Append(store, Key(id), 0, "abcdef", r).ok());
  // The same delivery again, then one that overlaps what is stored.
  ASSERT_TRUE(Append(store, Key(id), 0, "abcdef", r).ok());
  ASSERT_TRUE(Append(store, Key(id), 3, "defghi", r).ok());
  ASSERT_TRUE(Append(store, Key(id), 2, "c", r).ok());
  auto out = store.ReadOutput(Key(id), 0, kAll);
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectExtent(out->extent, 9, 9, 9, 9);
  EXPECT_EQ(Pieces(*out),
            (std::vector<std::pair<uint64_t, std::string>>{{0, "abcdefghi"}}));
}

TEST_P(StoreContractTest, OutputPastTheEndLeavesAnUncountedHole) {
  Store& store = Open();
  const std::string id = JobId(1);
  CreateAll(store, {MakeJob(id, kRunning, kT0)});
  const OutputRetention r{100, 100};
  ASSERT_TRUE(Append(store, Key(id), 0, "ab", r).ok());
  ASSERT_TRUE(Append(store, Key(id), 5, "fg", r).ok());
  auto out = store.ReadOutput(Key(id), 0, kAll);
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectExtent(out->extent, 7, 7, 7, 4);
  using P = std::vector<std::pair<uint64_t, std::string>>;
  EXPECT_EQ(Pieces(*out), (P{{0, "ab"}, {5, "fg"}}));
  // From inside the hole: the next stored bytes.
  out = store.ReadOutput(Key(id), 3, kAll);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Pieces(*out), (P{{5, "fg"}}));
  // The bytes of the hole come too late: before the end, ignored.
  ASSERT_TRUE(Append(store, Key(id), 2, "cde", r).ok());
  out = store.ReadOutput(Key(id), 0, kAll);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->extent.stored, 4u);
  // A hole in the tail is uncounted until it leaves the tail.
  const OutputRetention small{2, 4};
  const OutputKey err = Key(id, "p1", OUTPUT_STREAM_STDERR);
  ASSERT_TRUE(Append(store, err, 0, Bytes(0, 3), small).ok());
  ASSERT_TRUE(Append(store, err, 6, Bytes(6, 8), small).ok());
  out = store.ReadOutput(err, 0, kAll);
  ASSERT_TRUE(out.ok());
  ExpectExtent(out->extent, 8, 2, 4, 4);  // [0,2) and [6,8)
  EXPECT_EQ(Pieces(*out), (P{{0, "ab"}, {6, "gh"}}));
  ASSERT_TRUE(Append(store, err, 8, Bytes(8, 11), small).ok());
  out = store.ReadOutput(err, 0, kAll);
  ASSERT_TRUE(out.ok());
  ExpectExtent(out->extent, 11, 2, 7, 6);  // [0,2) and [7,11)
  EXPECT_EQ(Pieces(*out), (P{{0, "ab"}, {7, Bytes(7, 11)}}));
}

TEST_P(StoreContractTest, OutputReadsFromAnyOffsetAtMostMaxBytes) {
  Store& store = Open();
  const std::string id = JobId(1);
  CreateAll(store, {MakeJob(id, kRunning, kT0)});
  const OutputRetention r{4, 4};
  for (uint64_t at = 0; at < 21; at += 3) {
    ASSERT_TRUE(Append(store, Key(id), at, Bytes(at, at + 3), r).ok());
  }
  using P = std::vector<std::pair<uint64_t, std::string>>;
  struct Case {
    uint64_t offset;
    uint64_t max_bytes;
    P want;
  };
  const std::vector<Case> cases = {
      {0, kAll, {{0, "abcd"}, {17, "rstu"}}},
      {0, 6, {{0, "abcd"}, {17, "rs"}}},
      {0, 3, {{0, "abc"}}},
      {2, kAll, {{2, "cd"}, {17, "rstu"}}},
      {6, kAll, {{17, "rstu"}}},  // inside the omitted middle
      {19, kAll, {{19, "tu"}}},
      {19, 1, {{19, "t"}}},
      {21, kAll, {}},
      {500, kAll, {}},
      {0, 0, {}},  // the extent only
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(::testing::Message() << tc.offset << " " << tc.max_bytes);
    auto out = store.ReadOutput(Key(id), tc.offset, tc.max_bytes);
    ASSERT_TRUE(out.ok()) << out.status();
    ExpectExtent(out->extent, 21, 4, 17, 8);
    EXPECT_EQ(Pieces(*out), tc.want);
  }
}

TEST_P(StoreContractTest, OutputRetentionIsTheFirstAppends) {
  Store& store = Open();
  const std::string id = JobId(1);
  CreateAll(store, {MakeJob(id, kRunning, kT0)});
  // An empty append does not create the stream: its retention is not kept.
  ASSERT_TRUE(Append(store, Key(id), 0, "", {1, 1}).ok());
  ASSERT_TRUE(Append(store, Key(id), 0, Bytes(0, 10), {2, 3}).ok());
  ASSERT_TRUE(Append(store, Key(id), 10, Bytes(10, 20), {100, 100}).ok());
  auto out = store.ReadOutput(Key(id), 0, kAll);
  ASSERT_TRUE(out.ok());
  ExpectExtent(out->extent, 20, 2, 17, 5);
}

TEST_P(StoreContractTest, OutputExtentsListEveryStreamInOrder) {
  Store& store = Open();
  const std::string id = JobId(1);
  const std::string other = JobId(2);
  CreateAll(store, {MakeJob(id, kRunning, kT0, "a", {"p1", "p2"}),
                    MakeJob(other, kRunning, kT0)});
  auto extents = store.OutputExtents(id);
  ASSERT_TRUE(extents.ok()) << extents.status();
  EXPECT_TRUE(extents->empty());
  const OutputRetention r{4, 4};
  ASSERT_TRUE(Append(store, Key(id, "p2"), 0, "x", r).ok());
  ASSERT_TRUE(
      Append(store, Key(id, "p1", OUTPUT_STREAM_STDERR), 0, Bytes(0, 9), r)
          .ok());
  ASSERT_TRUE(Append(store, Key(id, "p1"), 0, "yy", r).ok());
  ASSERT_TRUE(Append(store, Key(other), 0, "zzz", r).ok());
  extents = store.OutputExtents(id);
  ASSERT_TRUE(extents.ok());
  ASSERT_EQ(extents->size(), 3u);
  const std::vector<std::pair<std::string, varan::v1::OutputStream>> want = {
      {"p1", OUTPUT_STREAM_STDOUT},
      {"p1", OUTPUT_STREAM_STDERR},
      {"p2", OUTPUT_STREAM_STDOUT}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ((*extents)[i].first.job_id, id);
    EXPECT_EQ((*extents)[i].first.target, want[i].first);
    EXPECT_EQ((*extents)[i].first.stream, want[i].second);
  }
  ExpectExtent((*extents)[0].second, 2, 2, 2, 2);
  ExpectExtent((*extents)[1].second, 9, 4, 5, 8);
  ExpectExtent((*extents)[2].second, 1, 1, 1, 1);
  // A stream that was never written reads as empty.
  auto out = store.ReadOutput(Key(id, "p2", OUTPUT_STREAM_STDERR), 0, kAll);
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectExtent(out->extent, 0, 0, 0, 0);
  EXPECT_TRUE(out->pieces.empty());
}

TEST_P(StoreContractTest, OutputErrorsNameTheJobAndStoreNothing) {
  Store& store = Open();
  const std::string id = JobId(1);
  const std::string unknown = JobId(9);
  CreateAll(store, {MakeJob(id, kRunning, kT0)});
  const OutputRetention r{4, 4};
  struct Case {
    std::string name;
    OutputKey key;
    uint64_t offset;
    absl::StatusCode want;
  };
  const std::vector<Case> cases = {
      {"unknown job", Key(unknown), 0, absl::StatusCode::kNotFound},
      {"no target", Key(id, ""), 0, absl::StatusCode::kInvalidArgument},
      {"no stream", Key(id, "p1", OUTPUT_STREAM_UNSPECIFIED), 0,
       absl::StatusCode::kInvalidArgument},
      {"end past 2^63", Key(id), (uint64_t{1} << 63) - 2,
       absl::StatusCode::kInvalidArgument},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    const absl::Status s = Append(store, tc.key, tc.offset, "abc", r);
    EXPECT_EQ(s.code(), tc.want) << s;
    if (tc.want == absl::StatusCode::kNotFound) {
      EXPECT_THAT(s.message(), HasSubstr(unknown));
    }
    EXPECT_TRUE(store.Sync().ok()) << "reported once";
  }
  auto read = store.ReadOutput(Key(unknown), 0, kAll);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(read.status().message(), HasSubstr(unknown));
  EXPECT_EQ(store.ReadOutput(Key(id, ""), 0, kAll).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto extents = store.OutputExtents(unknown);
  EXPECT_EQ(extents.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(extents.status().message(), HasSubstr(unknown));
  extents = store.OutputExtents(id);
  ASSERT_TRUE(extents.ok());
  EXPECT_TRUE(extents->empty());
}

TEST_P(StoreContractTest, OutputCallbackRunsInOrderAndAfterItIsReadable) {
  Store& store = Open();
  const std::string id = JobId(1);
  absl::Mutex mu;
  std::vector<std::string> order;
  uint64_t seen_end = 0;
  store.CreateJob(MakeJob(id, kRunning, kT0), [&](const absl::Status& s) {
    absl::MutexLock lock(&mu);
    order.push_back(s.ok() ? "create" : "create failed");
  });
  store.AppendOutput(Key(id), 0, "hello", {4, 4}, [&](const absl::Status& s) {
    auto out = store.ReadOutput(Key(id), 0, kAll);  // reads are allowed
    absl::MutexLock lock(&mu);
    order.push_back(s.ok() ? "output" : "output failed");
    if (out.ok()) seen_end = out->extent.end;
  });
  store.FinishJob(MakeJob(id, kSucceeded, kT0), [&](const absl::Status& s) {
    absl::MutexLock lock(&mu);
    order.push_back(s.ok() ? "finish" : "finish failed");
  });
  ASSERT_TRUE(store.Sync().ok());
  absl::MutexLock lock(&mu);
  EXPECT_EQ(order, (std::vector<std::string>{"create", "output", "finish"}));
  EXPECT_EQ(seen_end, 5u);
}

// Appends written without waiting, as core writes a fan-out's output: the
// job created with them, first appends of several streams, a stream's
// first append delivered twice and one past its head, each target's next
// append, an unknown job's first append among them. Each ends as if
// written alone.
TEST_P(StoreContractTest, OutputAppendsQueuedTogetherEndAsIfWrittenAlone) {
  Store& store = Open();
  const std::string id = JobId(1);
  const std::string unknown = JobId(9);
  absl::Mutex mu;
  std::vector<absl::Status> results;
  auto done = [&](const absl::Status& s) {
    absl::MutexLock lock(&mu);
    results.push_back(s);
  };
  const OutputRetention r{6, 4};
  store.CreateJob(MakeJob(id, kRunning, kT0), done);
  store.AppendOutput(Key(id, "p1"), 0, "abc", r, done);
  store.AppendOutput(Key(id, "p2"), 0, "xyz", r, done);
  store.AppendOutput(Key(unknown, "p1"), 0, "abc", r, done);
  store.AppendOutput(Key(id, "p1"), 0, "abcde", r, done);       // again, longer
  store.AppendOutput(Key(id, "p3"), 0, Bytes(0, 10), r, done);  // past head
  store.AppendOutput(Key(id, "p1"), 5, "fgh", r, done);
  store.AppendOutput(Key(id, "p2"), 3, "", r, done);
  // Sync tells of the failed write too.
  const absl::Status synced = store.Sync();
  EXPECT_EQ(synced.code(), absl::StatusCode::kNotFound) << synced;
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(results.size(), 8u);
    for (size_t i = 0; i < results.size(); ++i) {
      if (i == 3) {
        EXPECT_EQ(results[i].code(), absl::StatusCode::kNotFound) << results[i];
        EXPECT_THAT(results[i].message(), HasSubstr(unknown));
      } else {
        EXPECT_TRUE(results[i].ok()) << i << ": " << results[i];
      }
    }
  }
  auto p1 = store.ReadOutput(Key(id, "p1"), 0, kAll);
  ASSERT_TRUE(p1.ok()) << p1.status();
  ExpectExtent(p1->extent, 8, 6, 6, 8);
  EXPECT_EQ(Pieces(*p1),
            (std::vector<std::pair<uint64_t, std::string>>{{0, "abcdefgh"}}));
  auto p2 = store.ReadOutput(Key(id, "p2"), 0, kAll);
  ASSERT_TRUE(p2.ok()) << p2.status();
  ExpectExtent(p2->extent, 3, 3, 3, 3);
  EXPECT_EQ(Pieces(*p2),
            (std::vector<std::pair<uint64_t, std::string>>{{0, "xyz"}}));
  auto p3 = store.ReadOutput(Key(id, "p3"), 0, kAll);
  ASSERT_TRUE(p3.ok()) << p3.status();
  ExpectExtent(p3->extent, 10, 6, 6, 10);
  EXPECT_EQ(Pieces(*p3),
            (std::vector<std::pair<uint64_t, std::string>>{{0, Bytes(0, 10)}}));
  EXPECT_EQ(store.ReadOutput(Key(unknown, "p1"), 0, kAll).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(StoreContractTest, OutputIsNotPartOfTheJobOrItsEvents) {
  Store& store = Open();
  const std::string id = JobId(1);
  CreateWithEvents(store, MakeJob(id, kRunning, kT0));
  ASSERT_TRUE(Append(store, Key(id), 0, "output bytes", {100, 100}).ok());
  auto job = store.LoadJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->events.size(), 2u);
  for (const varan::v1::JobTarget& t : job->record.targets()) {
    EXPECT_TRUE(t.stdout().empty());
  }
  auto unfinished = store.LoadUnfinishedJobs();
  ASSERT_TRUE(unfinished.ok());
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].events.size(), 2u);
}

TEST_P(StoreContractTest, RetentionDeletesTheJobsOutput) {
  ContractOptions options;
  options.retention.max_jobs = 1;
  options.retention.interval = absl::ZeroDuration();  // PruneNow only
  Store& store = Open(options);
  const std::string old_id = JobId(1);
  const std::string new_id = JobId(2);
  CreateAll(store, {MakeJob(old_id, kSucceeded, kT0),
                    MakeJob(new_id, kSucceeded, kT0)});
  for (const std::string& id : {old_id, new_id}) {
    ASSERT_TRUE(Append(store, Key(id), 0, Bytes(0, 50), {10, 10}).ok());
    ASSERT_TRUE(
        Append(store, Key(id, "p1", OUTPUT_STREAM_STDERR), 0, "e", {10, 10})
            .ok());
  }
  auto pruned = store.PruneNow();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 1u);
  EXPECT_EQ(store.ReadOutput(Key(old_id), 0, kAll).status().code(),
            absl::StatusCode::kNotFound);
  // The same id again has no output of the old job's.
  CreateAll(store, {MakeJob(old_id, kRunning, kT0)});
  auto extents = store.OutputExtents(old_id);
  ASSERT_TRUE(extents.ok());
  EXPECT_TRUE(extents->empty());
  auto out = store.ReadOutput(Key(old_id), 0, kAll);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->extent.end, 0u);
  EXPECT_TRUE(out->pieces.empty());
  // The kept job's output is whole.
  out = store.ReadOutput(Key(new_id), 0, kAll);
  ASSERT_TRUE(out.ok());
  ExpectExtent(out->extent, 50, 10, 40, 20);
}

}  // namespace
}  // namespace varan::core

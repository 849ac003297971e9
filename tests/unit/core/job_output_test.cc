// Tests for the output side of core/jobs/job.h (issue #16): the live
// window and its output_gap records, pacing, OutputChunk offsets and
// stored output, on a fake clock and a MemoryStore, without sleeps.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "core/jobs/job.h"
#include "core/store/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

using varan::v1::ExecuteEvent;
using varan::v1::JobEvent;

class JobOutputTest : public ::testing::Test {
 protected:
  std::unique_ptr<Job> MakeJob(std::vector<std::string> names,
                               OutputLimits limits) {
    varan::v1::Job record;
    record.set_id("job-1");
    for (const auto& n : names) {
      auto* t = record.add_targets();
      t->set_name(n);
      t->set_state(varan::v1::TARGET_STATE_QUEUED);
    }
    auto job =
        std::make_unique<Job>(std::move(record), limits, &clock_, &store_);
    job->Persist(nullptr);
    return job;
  }
  static ExecuteEvent Chunk(uint64_t offset, const std::string& data,
                            bool err = false) {
    ExecuteEvent ev;
    ev.mutable_output()->set_stream(err ? varan::v1::OUTPUT_STREAM_STDERR
                                        : varan::v1::OUTPUT_STREAM_STDOUT);
    ev.mutable_output()->set_offset(offset);
    ev.mutable_output()->set_sequence(offset == 0 ? 0 : 1);
    ev.mutable_output()->set_data(data);
    return ev;
  }
  static ExecuteEvent Exited() {
    ExecuteEvent ev;
    ev.mutable_exited()->set_kind(varan::v1::ExitStatus::KIND_EXITED);
    return ev;
  }
  std::string Stored(const std::string& target) {
    EXPECT_TRUE(store_.Sync().ok());
    auto out = store_.ReadOutput(
        {"job-1", target, varan::v1::OUTPUT_STREAM_STDOUT}, 0, 1 << 30);
    std::string joined;
    if (out.ok()) {
      for (const auto& p : out->pieces) joined += p.data;
    }
    return joined;
  }
  // Reads from `seq` as a watcher does: events and gaps, to the end.
  static std::vector<JobEvent> ReadAll(const Job& job, uint64_t seq = 0) {
    std::vector<JobEvent> out;
    JobEvent ev;
    while (job.EventAt(seq, &ev) == Job::Read::kEvent) {
      out.push_back(ev);
      seq = ev.sequence() + 1;
    }
    return out;
  }

  FakeClock clock_;
  MemoryStore store_;
};

TEST_F(JobOutputTest, EvictedOutputBecomesMergedGapsWithOffsets) {
  auto job = MakeJob({"a", "b"}, {.live_window_bytes = 4});
  job->OnExecuteEvent(0, Chunk(0, "aaa"));  // seq 1
  job->OnExecuteEvent(1, Chunk(0, "bb"));   // seq 2
  job->OnExecuteEvent(0, Chunk(3, "AAA"));  // seq 3
  job->OnExecuteEvent(0, Chunk(6, "x"));    // seq 4
  // Window of 4 bytes: 1 and 2 are evicted, 3 and 4 (4 bytes) stay.
  JobEvent ev;
  ASSERT_EQ(job->EventAt(2, &ev), Job::Read::kEvent);
  ASSERT_TRUE(ev.has_output_gap()) << ev.DebugString();
  EXPECT_EQ(ev.output_gap().first_sequence(), 1u);
  EXPECT_EQ(ev.sequence(), 2u);
  ASSERT_EQ(ev.output_gap().missed_size(), 2);
  EXPECT_EQ(ev.output_gap().missed(0).target(), "a");
  EXPECT_EQ(ev.output_gap().missed(0).offset(), 0u);
  EXPECT_EQ(ev.output_gap().missed(0).bytes(), 3u);
  EXPECT_EQ(ev.output_gap().missed(1).target(), "b");
  EXPECT_EQ(ev.output_gap().missed(1).bytes(), 2u);
  ASSERT_EQ(job->EventAt(3, &ev), Job::Read::kEvent);
  EXPECT_EQ(ev.output().data(), "AAA");
  // One more byte evicts "AAA", merged into the gap (a, offset 3).
  job->OnExecuteEvent(0, Chunk(7, "y"));
  ASSERT_EQ(job->EventAt(1, &ev), Job::Read::kEvent);
  EXPECT_EQ(ev.sequence(), 3u);
  ASSERT_EQ(ev.output_gap().missed_size(), 3);
  EXPECT_EQ(ev.output_gap().missed(2).offset(), 3u);
  EXPECT_EQ(ev.output_gap().missed(2).bytes(), 3u);
  // A watcher from 0 gets accepted, one gap, then the kept output.
  auto all = ReadAll(*job);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_TRUE(all[0].has_accepted());
  EXPECT_TRUE(all[1].has_output_gap());
  EXPECT_EQ(all[2].output().data(), "x");
  EXPECT_EQ(all[3].output().data(), "y");
  // Everything is still stored.
  job->OnExecuteEvent(0, Exited());
  EXPECT_EQ(Stored("a"), "aaaAAAxy");
}

// A target's last bytes are stored when it ends, a moment after its
// `finished` event; GetJob answers once they are (WhenFinalOutputStored) so
// that its previews agree with the state it shows.
TEST_F(JobOutputTest, WhenFinalOutputStoredWaitsForTheLastAppend) {
  auto job = MakeJob({"a"}, {});
  ASSERT_TRUE(store_.Sync().ok());
  absl::Notification at_once;
  job->WhenFinalOutputStored([&] { at_once.Notify(); });
  EXPECT_TRUE(at_once.HasBeenNotified());  // nothing final yet, nothing owed
  // Hold the store's callback thread: later commits wait behind it.
  absl::Notification release;
  varan::v1::Job other;
  other.set_id("job-2");
  store_.CreateJob(other,
                   [&](const absl::Status&) { release.WaitForNotification(); });
  job->OnExecuteEvent(0, Chunk(0, "last words\n"));
  job->OnExecuteEvent(0, Exited());
  ASSERT_TRUE(job->finished());
  absl::Notification stored;
  std::string seen;
  job->WhenFinalOutputStored([&] {
    // A read, as GetJob's answer makes (on the store's thread: no Sync).
    auto out = store_.ReadOutput(
        {"job-1", "a", varan::v1::OUTPUT_STREAM_STDOUT}, 0, 1 << 20);
    if (out.ok()) {
      for (const auto& p : out->pieces) seen += p.data;
    }
    stored.Notify();
  });
  EXPECT_FALSE(stored.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  release.Notify();
  ASSERT_TRUE(stored.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(seen, "last words\n");
}

TEST_F(JobOutputTest, AdjacentEvictionsOfOneStreamMergeIntoOneMissedRange) {
  auto job = MakeJob({"a"}, {.live_window_bytes = 1});
  for (int i = 0; i < 100; ++i) job->OnExecuteEvent(0, Chunk(i * 2, "zz"));
  JobEvent ev;
  ASSERT_EQ(job->EventAt(1, &ev), Job::Read::kEvent);
  ASSERT_TRUE(ev.has_output_gap());
  EXPECT_EQ(ev.sequence(), 100u);  // everything evicted: the window is 1 B
  ASSERT_EQ(ev.output_gap().missed_size(), 1);
  EXPECT_EQ(ev.output_gap().missed(0).bytes(), 200u);
}

TEST_F(JobOutputTest, PacerHoldsTheWindowAndReleasesOnConsumed) {
  auto job = MakeJob({"a"}, {.live_window_bytes = 4});
  const uint64_t pacer = job->AddWatcher([] {}, /*pacing=*/true);
  int woken = 0;
  auto ev1 = Chunk(0, "12345");
  EXPECT_FALSE(job->OfferExecuteEvent(0, ev1, [&] { ++woken; }));
  JobEvent ev;
  ASSERT_EQ(job->EventAt(1, &ev), Job::Read::kEvent);
  EXPECT_EQ(ev.output().data(), "12345");  // not evicted: not consumed
  job->Consumed(pacer, 1);                 // accepted only
  EXPECT_EQ(woken, 0);
  job->Consumed(pacer, 2);
  EXPECT_EQ(woken, 1);
  ASSERT_EQ(job->EventAt(1, &ev), Job::Read::kEvent);
  EXPECT_TRUE(ev.has_output_gap());
}

TEST_F(JobOutputTest, RemovingThePacerCancelOrReleaseFreesTheProducer) {
  for (int how = 0; how < 3; ++how) {
    SCOPED_TRACE(how);
    auto job = MakeJob({"a"}, {.live_window_bytes = 2});
    const uint64_t pacer = job->AddWatcher([] {}, /*pacing=*/true);
    int woken = 0;
    auto chunk = Chunk(0, "abc");
    ASSERT_FALSE(job->OfferExecuteEvent(0, chunk, [&] { ++woken; }));
    if (how == 0) job->RemoveWatcher(pacer);
    if (how == 1) job->RequestCancel("alice");
    if (how == 2) job->ReleaseProducers();
    EXPECT_EQ(woken, 1);
  }
}

TEST_F(JobOutputTest, BlockedProducerThreadIsReleasedByConsumedAndShutdown) {
  auto job = MakeJob({"a"}, {.live_window_bytes = 2});
  absl::Notification wrote;
  const uint64_t pacer = job->AddWatcher(
      [&] {
        if (!wrote.HasBeenNotified()) wrote.Notify();
      },
      /*pacing=*/true);
  std::thread producer([&] {
    job->OnExecuteEvent(0, Chunk(0, "abc"));  // blocks: window full
    job->OnExecuteEvent(0, Chunk(3, "def"));
  });
  wrote.WaitForNotification();
  job->Consumed(pacer, 2);  // the first chunk is written
  job->ReleaseProducers();  // core stops: the second must not hang
  producer.join();
  EXPECT_EQ(ReadAll(*job).size(), 3u);
}

TEST_F(JobOutputTest, OffsetsDropDuplicatesTrimOverlapsCountJumpsRefuseAbsurd) {
  auto job = MakeJob({"a"}, {});
  job->OnExecuteEvent(0, Chunk(0, "hello"));
  job->OnExecuteEvent(0, Chunk(0, "hello"));              // duplicate
  job->OnExecuteEvent(0, Chunk(3, "lo world"));           // overlap of 2
  job->OnExecuteEvent(0, Chunk(20, "!"));                 // jump of 9
  job->OnExecuteEvent(0, Chunk(uint64_t{1} << 63, "x"));  // absurd
  auto all = ReadAll(*job);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[2].output().data(), " world");
  EXPECT_EQ(all[2].output().offset(), 5u);
  EXPECT_EQ(all[3].output().offset(), 20u);
  auto info = job->Snapshot().targets(0).stdout_info();
  EXPECT_EQ(info.total_bytes(), 21u);
  EXPECT_EQ(info.omitted_bytes(), 9u);
  job->OnExecuteEvent(0, Exited());
  EXPECT_EQ(Stored("a"), "hello world!");
}

TEST_F(JobOutputTest, StoredOutputIsBufferedThenFlushedAndFinalAfterIt) {
  auto job = MakeJob({"a"}, {.head_bytes = 2, .tail_bytes = 3});
  job->OnExecuteEvent(0, Chunk(0, "abcdefgh"));
  job->OnExecuteEvent(0, Chunk(8, "ij"));
  // Small and recent: buffered, except the first append of the stream.
  clock_.Advance(absl::Seconds(2));
  job->FlushOutput();
  EXPECT_EQ(Stored("a"), "abhij");
  job->OnExecuteEvent(0, Exited());
  ASSERT_TRUE(store_.Sync().ok());
  auto loaded = store_.LoadJob("job-1");
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->record.state(), varan::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(loaded->record.targets(0).stdout_info().total_bytes(), 10u);
  EXPECT_EQ(loaded->record.targets(0).stdout_info().omitted_bytes(), 5u);
}

// A fast stream's tail is stored once per interval, not per chunk or per
// 256 KiB: the store writes a few MiB a second per stream, whatever the
// stream's rate.
TEST_F(JobOutputTest, AFastTailIsStoredOncePerIntervalNotAsItArrives) {
  auto job = MakeJob({"a"}, {.head_bytes = 2, .tail_bytes = 3});
  job->OnExecuteEvent(0, Chunk(0, "abcdef"));  // the first append: at once
  EXPECT_EQ(Stored("a"), "abdef");
  // 1 MiB more within the same second: four times the 256 KiB that used to
  // start an append of the tail.
  uint64_t offset = 6;
  for (int i = 0; i < 16; ++i) {
    const std::string piece(64 << 10, static_cast<char>('g' + i));
    job->OnExecuteEvent(0, Chunk(offset, piece));
    offset += piece.size();
  }
  job->OnExecuteEvent(0, Chunk(offset, "xyz"));
  job->FlushOutput();
  EXPECT_EQ(Stored("a"), "abdef") << "the tail was stored before its time";
  clock_.Advance(absl::Seconds(1));
  job->FlushOutput();
  EXPECT_EQ(Stored("a"), "abxyz");
}

}  // namespace
}  // namespace varan::core

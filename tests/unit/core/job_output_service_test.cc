// Tests for core/server/job_output.h on a MemoryStore: GetJob's answer
// (validation, target paging, OutputInfo sizes from the record or the
// store's extents, previews and their shared budget) and ListJobs' bounds;
// every answer stays below 1 MiB serialized for a job with 2,000 targets
// and big output.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/server/job_output.h"
#include "core/store/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

using ::testing::HasSubstr;
using varan::v1::OutputInfo;

// Asserts a response message is below 1 MiB serialized (and so far below
// gRPC's 4 MiB limit).
void ExpectUnderOneMiB(const google::protobuf::Message& m) {
  EXPECT_LT(m.ByteSizeLong(), size_t{1} << 20) << m.GetTypeName();
}

std::string TargetName(int i) { return absl::StrFormat("p%05d", i); }

// A job record with `targets` targets (names in order), each FAILED with a
// 200-byte error, created in `store`.
varan::v1::Job MakeJob(MemoryStore* store, const std::string& id, int targets) {
  varan::v1::Job job;
  job.set_id(id);
  job.mutable_spec()->add_argv("cat");
  for (int i = 0; i < targets; ++i) {
    auto* t = job.add_targets();
    t->set_name(TargetName(i));
    t->set_state(varan::v1::TARGET_STATE_FAILED);
    t->set_error(std::string(200, 'e'));
  }
  store->CreateJob(job, {});
  EXPECT_TRUE(store->Sync().ok());
  return job;
}

// Appends `data` at `offset` of a target's stream, keeping `head` + `tail`.
void Append(MemoryStore* store, const std::string& job, const std::string& t,
            varan::v1::OutputStream stream, uint64_t offset,
            const std::string& data, uint64_t head, uint64_t tail) {
  store->AppendOutput(OutputKey{job, t, stream}, offset, data,
                      OutputRetention{head, tail}, {});
}

TEST(GetJobAnswerTest, RefusesPreviewsOverTheMaximumNamingTheField) {
  MemoryStore store;
  varan::v1::GetJobRequest request;
  request.set_preview_bytes(65537);
  auto answer = GetJobAnswer(MakeJob(&store, "j1", 1), request, &store);
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(answer.status().message(), HasSubstr("preview_bytes"));
  request.set_preview_bytes(65536);
  EXPECT_TRUE(GetJobAnswer(MakeJob(&store, "j2", 1), request, &store).ok());
}

TEST(GetJobAnswerTest, PagesThroughTargetsAThousandAtATime) {
  MemoryStore store;
  const varan::v1::Job job = MakeJob(&store, "j1", 2500);
  varan::v1::GetJobRequest request;
  for (auto [offset, first, size] :
       std::vector<std::tuple<int, int, int>>{{0, 0, 1000},
                                              {1000, 1000, 1000},
                                              {2000, 2000, 500},
                                              {2400, 2400, 100},
                                              {5000, 0, 0}}) {
    request.set_target_offset(offset);
    auto answer = GetJobAnswer(job, request, &store);
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->target_count(), 2500u);
    ASSERT_EQ(answer->targets_size(), size) << "offset " << offset;
    if (size > 0) {
      EXPECT_EQ(answer->targets(0).name(), TargetName(first));
    }
  }
}

TEST(GetJobAnswerTest, SizesComeFromTheStoreWhenTheRecordHasNone) {
  MemoryStore store;
  const varan::v1::Job job = MakeJob(&store, "j1", 2);
  std::string out;
  for (int i = 0; i < 100; ++i) out += static_cast<char>('a' + i % 26);
  // 100 bytes, 10 kept at the head and 10 at the tail.
  Append(&store, "j1", TargetName(0), varan::v1::OUTPUT_STREAM_STDOUT, 0, out,
         10, 10);
  Append(&store, "j1", TargetName(0), varan::v1::OUTPUT_STREAM_STDERR, 0,
         "oops\n", 10, 10);
  ASSERT_TRUE(store.Sync().ok());

  varan::v1::GetJobRequest request;
  request.set_preview_bytes(8);
  auto answer = GetJobAnswer(job, request, &store);
  ASSERT_TRUE(answer.ok()) << answer.status();
  const OutputInfo& o = answer->targets(0).stdout_info();
  EXPECT_EQ(o.total_bytes(), 100u);
  EXPECT_EQ(o.head_end(), 10u);
  EXPECT_EQ(o.tail_start(), 90u);
  EXPECT_EQ(o.omitted_bytes(), 80u);
  EXPECT_EQ(answer->targets(0).stdout_uncaptured_bytes(), 80u);
  // Half the preview from the head, half from the end of the tail.
  EXPECT_EQ(o.head(), out.substr(0, 4));
  EXPECT_EQ(o.tail(), out.substr(96));
  EXPECT_EQ(o.tail_preview_offset(), 96u);
  // A stream wholly stored that fits in the preview: all of it in `head`.
  const OutputInfo& e = answer->targets(0).stderr_info();
  EXPECT_EQ(e.total_bytes(), 5u);
  EXPECT_EQ(e.omitted_bytes(), 0u);
  EXPECT_EQ(e.head(), "oops\n");
  EXPECT_EQ(e.tail(), "");
  // A target without output: zero sizes, no preview.
  EXPECT_EQ(answer->targets(1).stdout_info().total_bytes(), 0u);
  EXPECT_EQ(answer->targets(1).stdout_info().head(), "");
  // Without preview_bytes: sizes only.
  request.set_preview_bytes(0);
  answer = GetJobAnswer(job, request, &store);
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->targets(0).stdout_info().total_bytes(), 100u);
  EXPECT_EQ(answer->targets(0).stdout_info().head(), "");
  EXPECT_EQ(answer->targets(0).stdout_info().tail(), "");
}

TEST(GetJobAnswerTest, SizesComeFromTheRecordWhenItHasThem) {
  MemoryStore store;
  varan::v1::Job job = MakeJob(&store, "j1", 1);
  Append(&store, "j1", TargetName(0), varan::v1::OUTPUT_STREAM_STDOUT, 0,
         "hello", 10, 10);
  ASSERT_TRUE(store.Sync().ok());
  // A running job's counters are ahead of the store, and its record says
  // nothing of stderr yet (the store's extents then).
  job.mutable_targets(0)->mutable_stdout_info()->set_total_bytes(700);
  job.mutable_targets(0)->mutable_stdout_info()->set_head_end(10);
  job.mutable_targets(0)->mutable_stdout_info()->set_tail_start(690);
  job.mutable_targets(0)->mutable_stdout_info()->set_omitted_bytes(680);
  job.mutable_targets(0)->set_stdout("deprecated bytes");
  varan::v1::GetJobRequest request;
  request.set_preview_bytes(100);
  auto answer = GetJobAnswer(job, request, &store);
  ASSERT_TRUE(answer.ok()) << answer.status();
  const auto& t = answer->targets(0);
  EXPECT_EQ(t.stdout_info().total_bytes(), 700u);
  EXPECT_EQ(t.stdout_info().omitted_bytes(), 680u);
  EXPECT_EQ(t.stdout_uncaptured_bytes(), 680u);
  EXPECT_EQ(t.stdout(), "");
  // The preview is what the store holds.
  EXPECT_EQ(t.stdout_info().head(), "hello");
  EXPECT_TRUE(t.has_stderr_info());
  EXPECT_EQ(t.stderr_info().total_bytes(), 0u);
}

// 2,000 targets, each with 40 KiB of stdout and stderr, of which the first
// and the last 4 KiB are stored.
class BigJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    job_ = MakeJob(&store_, "big", 2000);
    const std::string chunk(40 * 1024, 'x');
    for (int i = 0; i < 2000; ++i) {
      for (auto stream :
           {varan::v1::OUTPUT_STREAM_STDOUT, varan::v1::OUTPUT_STREAM_STDERR}) {
        Append(&store_, "big", TargetName(i), stream, 0, chunk, 4096, 4096);
      }
    }
    ASSERT_TRUE(store_.Sync().ok());
  }
  MemoryStore store_;
  varan::v1::Job job_;
};

TEST_F(BigJobTest, EveryGetJobAnswerStaysBelowOneMiBAndSharesThePreviews) {
  varan::v1::GetJobRequest request;
  request.set_preview_bytes(65536);
  for (uint32_t offset : {0u, 1000u, 1990u}) {
    request.set_target_offset(offset);
    auto answer = GetJobAnswer(job_, request, &store_);
    ASSERT_TRUE(answer.ok()) << answer.status();
    ExpectUnderOneMiB(*answer);
    const auto& info = answer->targets(0).stdout_info();
    EXPECT_EQ(info.total_bytes(), 40u * 1024);
    EXPECT_EQ(info.omitted_bytes(), 32u * 1024);
    // Each stream still gets a preview, smaller than asked.
    EXPECT_GT(info.head().size(), 0u);
    EXPECT_GT(info.tail().size(), 0u);
    EXPECT_LE(info.head().size() + info.tail().size(), 65536u);
  }
  // A page of 4 targets gets the full preview asked for: as much as is
  // stored of the first and the last 32 KiB.
  request.set_target_offset(1996);
  auto answer = GetJobAnswer(job_, request, &store_);
  ASSERT_TRUE(answer.ok());
  const auto& info = answer->targets(0).stdout_info();
  EXPECT_EQ(info.head(), std::string(4096, 'x'));
  EXPECT_EQ(info.tail(), std::string(4096, 'x'));
  EXPECT_EQ(info.tail_preview_offset(), 36u * 1024);
}

TEST(BoundListJobsTest, KeepsAHundredTargetsPerJobAndEndsThePageAtOneMiB) {
  MemoryStore store;
  varan::v1::ListJobsResponse response;
  // 30 jobs of 2,000 targets (about 22 KiB each once bounded).
  for (int j = 0; j < 30; ++j) {
    varan::v1::Job job = MakeJob(&store, absl::StrCat("job", 100 - j), 2000);
    job.mutable_targets(0)->set_stdout(std::string(1000, 'o'));
    // Errors long enough that 30 jobs of 100 targets pass 1 MiB.
    for (auto& t : *job.mutable_targets()) t.set_error(std::string(500, 'e'));
    *response.add_jobs() = std::move(job);
  }
  response.set_next_page_token("job71");
  BoundListJobs(&response);
  ExpectUnderOneMiB(response);
  ASSERT_GT(response.jobs_size(), 0);
  ASSERT_LT(response.jobs_size(), 30);
  for (const auto& job : response.jobs()) {
    EXPECT_EQ(job.target_count(), 2000u);
    EXPECT_EQ(job.targets_size(), 100);
    EXPECT_EQ(job.targets(0).stdout(), "");
    EXPECT_FALSE(job.targets(0).has_stdout_info());
  }
  // The next page starts after the last job of this one.
  EXPECT_EQ(response.next_page_token(),
            response.jobs(response.jobs_size() - 1).id());
}

TEST(BoundListJobsTest, KeepsOneJobEvenAboveTheBudgetAndASmallPageAsIs) {
  varan::v1::ListJobsResponse response;
  for (int j = 0; j < 2; ++j) {
    auto* job = response.add_jobs();
    job->set_id(absl::StrCat("job", 9 - j));
    job->mutable_spec()->add_argv(std::string(1100 * 1024, 'a'));
  }
  BoundListJobs(&response);
  ASSERT_EQ(response.jobs_size(), 1);
  EXPECT_EQ(response.next_page_token(), "job9");

  varan::v1::ListJobsResponse small;
  small.add_jobs()->set_id("job1");
  small.add_jobs()->set_id("job0");
  BoundListJobs(&small);
  EXPECT_EQ(small.jobs_size(), 2);
  EXPECT_EQ(small.next_page_token(), "");
}

}  // namespace
}  // namespace varan::core

namespace varan::core {
namespace {

varan::v1::JobEvent Chunk(uint64_t seq, const std::string& target,
                          uint64_t offset, size_t size) {
  varan::v1::JobEvent ev;
  ev.set_sequence(seq);
  ev.set_target(target);
  ev.mutable_output()->set_stream(varan::v1::OUTPUT_STREAM_STDOUT);
  ev.mutable_output()->set_offset(offset);
  ev.mutable_output()->set_data(std::string(size, 'x'));
  return ev;
}

// A follower got sequences 0..2 (a's bytes [0, 30)) before they were
// evicted into a gap covering 0..5 (a's [0, 60), b's [0, 10)): the gap it
// is given names only what it did not get, from its next sequence.
TEST(FollowerOffsetsTest, AGapIsTrimmedToWhatTheFollowerMissed) {
  FollowerOffsets offsets;
  for (uint64_t seq = 0; seq < 3; ++seq) {
    auto ev = Chunk(seq, "a", seq * 10, 10);
    offsets.Trim(seq, ev);
  }
  varan::v1::JobEvent gap;
  gap.set_sequence(5);
  gap.mutable_output_gap()->set_first_sequence(0);
  auto* m = gap.mutable_output_gap()->add_missed();
  m->set_target("a");
  m->set_stream(varan::v1::OUTPUT_STREAM_STDOUT);
  m->set_offset(0);
  m->set_bytes(60);
  m = gap.mutable_output_gap()->add_missed();
  m->set_target("b");
  m->set_stream(varan::v1::OUTPUT_STREAM_STDOUT);
  m->set_offset(0);
  m->set_bytes(10);
  offsets.Trim(3, gap);
  EXPECT_EQ(gap.output_gap().first_sequence(), 3u);
  ASSERT_EQ(gap.output_gap().missed_size(), 2);
  EXPECT_EQ(gap.output_gap().missed(0).target(), "a");
  EXPECT_EQ(gap.output_gap().missed(0).offset(), 30u);
  EXPECT_EQ(gap.output_gap().missed(0).bytes(), 30u);
  EXPECT_EQ(gap.output_gap().missed(1).offset(), 0u);
  EXPECT_EQ(gap.output_gap().missed(1).bytes(), 10u);

  // A stream the follower got entirely before eviction is not named.
  varan::v1::JobEvent again = gap;
  again.set_sequence(6);
  again.mutable_output_gap()->set_first_sequence(0);
  offsets.Trim(6, again);
  EXPECT_EQ(again.output_gap().missed_size(), 0);
}

}  // namespace
}  // namespace varan::core

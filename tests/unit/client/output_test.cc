// Tests for reading a job's stored output from the client side:
// CoreClient::GetJob's target paging and CoreClient::ReadOutput
// (client/core_client.h), `varanctl jobs logs` (WriteLogs) and the sizes and
// previews of `varanctl jobs get` (client/cli/output.h, PrintJob). Core is a
// fake Jobs service on loopback that answers GetJob in pages and ReadOutput
// with the pieces each test gives it.
#include "client/cli/output.h"

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/cli/cli.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/unit/client/fake_core.h"

namespace varan::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using varan::v1::OutputPiece;

OutputPiece Piece(uint64_t offset, const std::string& data, uint64_t skipped,
                  uint64_t total) {
  OutputPiece p;
  p.set_offset(offset);
  p.set_data(data);
  p.set_skipped_bytes(skipped);
  p.set_total_bytes(total);
  return p;
}

// A Jobs service with one job ("job-1"): GetJob answers `page_size`
// targets from the request's target_offset; ReadOutput answers the pieces
// set for the target asked (NOT_FOUND for any other). Records the requests.
// Thread-safe (gRPC's threads call it).
class FakeJobs final : public varan::v1::Jobs::CallbackService {
 public:
  void SetJob(varan::v1::Job job, int page_size, bool set_count = true) {
    absl::MutexLock lock(&mu_);
    if (set_count) job.set_target_count(job.targets_size());
    job_ = std::move(job);
    page_size_ = page_size;
  }
  void SetPieces(const std::string& target, std::vector<OutputPiece> pieces) {
    absl::MutexLock lock(&mu_);
    pieces_target_ = target;
    pieces_ = std::move(pieces);
  }
  std::vector<varan::v1::GetJobRequest> gets() const {
    absl::MutexLock lock(&mu_);
    return gets_;
  }
  std::vector<varan::v1::ReadOutputRequest> reads() const {
    absl::MutexLock lock(&mu_);
    return reads_;
  }

  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx,
                                   const varan::v1::GetJobRequest* request,
                                   varan::v1::Job* response) override {
    absl::MutexLock lock(&mu_);
    gets_.push_back(*request);
    auto* reactor = ctx->DefaultReactor();
    if (request->job_id() != job_.id()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "no job"));
      return reactor;
    }
    *response = job_;
    response->clear_targets();
    for (int i = static_cast<int>(request->target_offset());
         i < job_.targets_size() && response->targets_size() < page_size_;
         ++i) {
      *response->add_targets() = job_.targets(i);
    }
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<OutputPiece>* ReadOutput(
      grpc::CallbackServerContext*,
      const varan::v1::ReadOutputRequest* request) override {
    absl::MutexLock lock(&mu_);
    reads_.push_back(*request);
    if (request->job_id() != job_.id() || request->target() != pieces_target_) {
      return new varan::testing::ScriptedWriter<OutputPiece>(
          {}, grpc::Status(grpc::StatusCode::NOT_FOUND,
                           absl::StrCat("no target ", request->target())));
    }
    return new varan::testing::ScriptedWriter<OutputPiece>(pieces_,
                                                           grpc::Status::OK);
  }

 private:
  mutable absl::Mutex mu_;
  varan::v1::Job job_ ABSL_GUARDED_BY(mu_);
  int page_size_ ABSL_GUARDED_BY(mu_) = 1000;
  std::string pieces_target_ ABSL_GUARDED_BY(mu_);
  std::vector<OutputPiece> pieces_ ABSL_GUARDED_BY(mu_);
  std::vector<varan::v1::GetJobRequest> gets_ ABSL_GUARDED_BY(mu_);
  std::vector<varan::v1::ReadOutputRequest> reads_ ABSL_GUARDED_BY(mu_);
};

varan::v1::Job JobWithTargets(int count) {
  varan::v1::Job job;
  job.set_id("job-1");
  for (int i = 0; i < count; ++i) {
    job.add_targets()->set_name(absl::StrCat("web-", 1000 + i));
  }
  return job;
}

class OutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    varan::testing::ServeOnLoopback(&jobs_, &server_, &client_);
    if (HasFatalFailure()) return;
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  absl::Status Logs(LogsOptions options) {
    options.job_id = "job-1";
    return WriteLogs(*client_, options, out_, err_);
  }

  FakeJobs jobs_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<client::CoreClient> client_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(OutputTest, GetJobFetchesEveryPageOfTargets) {
  jobs_.SetJob(JobWithTargets(2500), 1000);
  auto job = client_->GetJob("job-1", 512);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->targets_size(), 2500);
  EXPECT_EQ(job->target_count(), 2500u);
  for (int i = 0; i < 2500; ++i) {
    ASSERT_EQ(job->targets(i).name(), absl::StrCat("web-", 1000 + i));
  }
  std::vector<uint32_t> offsets;
  for (const auto& g : jobs_.gets()) {
    offsets.push_back(g.target_offset());
    EXPECT_EQ(g.preview_bytes(), 512u);
  }
  EXPECT_THAT(offsets, ElementsAre(0, 1000, 2000));
}

TEST_F(OutputTest, GetJobFromACoreWithoutPagingAsksOnce) {
  jobs_.SetJob(JobWithTargets(3), 1000, /*set_count=*/false);
  auto job = client_->GetJob("job-1");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->targets_size(), 3);
  EXPECT_EQ(jobs_.gets().size(), 1u);
}

TEST_F(OutputTest, GetJobStopsWhenPagesDoNotAddUp) {
  varan::v1::Job job = JobWithTargets(2);
  job.set_target_count(5);  // more than core ever lists
  jobs_.SetJob(job, 1000, /*set_count=*/false);
  auto got = client_->GetJob("job-1");
  EXPECT_TRUE(absl::IsInternal(got.status())) << got.status();
  EXPECT_EQ(jobs_.gets().size(), 2u);
}

// The stored head, then the tail after bytes core did not store: stdout
// gets exactly the stored bytes (binary ones too), stderr the note.
TEST_F(OutputTest, LogsAreByteExactWithANoteForEachHole) {
  jobs_.SetJob(JobWithTargets(1), 1000);
  const std::string tail("tail\0\xff\n", 7);
  jobs_.SetPieces(
      "web-1000",
      {Piece(0, "head\n", 0, 12'345'690), Piece(5, "more", 0, 12'345'690),
       Piece(12'345'683, tail, 12'345'674, 12'345'690)});
  ASSERT_TRUE(Logs({}).ok());
  EXPECT_EQ(out_.str(), "head\nmore" + tail);
  EXPECT_EQ(err_.str(),
            "varanctl: web-1000 stdout: ... 12,345,674 bytes not stored "
            "(bytes 9 to 12,345,682) ...\n");
  ASSERT_EQ(jobs_.reads().size(), 1u);
  EXPECT_EQ(jobs_.reads()[0].target(), "web-1000");
  EXPECT_EQ(jobs_.reads()[0].stream(), varan::v1::OUTPUT_STREAM_STDOUT);
  EXPECT_FALSE(jobs_.reads()[0].follow());
}

TEST_F(OutputTest, LogsSayWhatIsNotStoredYetAtTheEnd) {
  jobs_.SetJob(JobWithTargets(1), 1000);
  jobs_.SetPieces("web-1000", {Piece(0, "abc", 0, 10)});
  ASSERT_TRUE(Logs({}).ok());
  EXPECT_EQ(out_.str(), "abc");
  EXPECT_EQ(err_.str(),
            "varanctl: web-1000 stdout: ... 7 bytes not stored (yet) (bytes "
            "3 to 9) ...\n");
}

TEST_F(OutputTest, LogsFollowAndStderrAreAskedOfCore) {
  jobs_.SetJob(JobWithTargets(2), 1000);
  jobs_.SetPieces("web-1001", {Piece(0, "warn\n", 0, 5)});
  LogsOptions options;
  options.target = "web-1001";
  options.stderr_stream = true;
  options.follow = true;
  ASSERT_TRUE(Logs(options).ok());
  EXPECT_EQ(out_.str(), "warn\n");
  EXPECT_THAT(err_.str(), IsEmpty());
  ASSERT_EQ(jobs_.reads().size(), 1u);
  EXPECT_EQ(jobs_.reads()[0].stream(), varan::v1::OUTPUT_STREAM_STDERR);
  EXPECT_TRUE(jobs_.reads()[0].follow());
  EXPECT_THAT(jobs_.gets(), IsEmpty());  // -t given: no need to ask
}

TEST_F(OutputTest, LogsWithoutATargetAmongSeveralNameThem) {
  jobs_.SetJob(JobWithTargets(12), 1000);
  absl::Status s = Logs({});
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(s.message(),
              HasSubstr("job job-1 has 12 targets; choose one with -t: "
                        "web-1000, web-1001,"));
  EXPECT_THAT(s.message(), HasSubstr("web-1009, ..."));
  EXPECT_THAT(jobs_.reads(), IsEmpty());
  EXPECT_THAT(out_.str(), IsEmpty());
}

TEST_F(OutputTest, LogsOfAJobWithoutTargetsOrAnUnknownTargetFail) {
  jobs_.SetJob(JobWithTargets(0), 1000);
  absl::Status s = Logs({});
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("has no targets"));

  LogsOptions options;
  options.target = "nope";
  s = Logs(options);
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("no target nope"));
}

varan::v1::OutputInfo Info(uint64_t total, uint64_t omitted) {
  varan::v1::OutputInfo info;
  info.set_total_bytes(total);
  info.set_head_end(total - omitted > (1 << 20) ? 1 << 20 : total - omitted);
  info.set_tail_start(info.head_end() + omitted);
  info.set_omitted_bytes(omitted);
  return info;
}

TEST(PrintJobTest, SizesAndPreviewsWithTheCountBetween) {
  varan::v1::Job job = JobWithTargets(2);
  job.set_output_head_bytes(1 << 20);
  job.set_output_tail_bytes(3 << 20);
  auto* big = job.mutable_targets(0);
  *big->mutable_stdout_info() = Info(12'345'678, 8'151'374);
  big->mutable_stdout_info()->set_head("first line\nsec");
  big->mutable_stdout_info()->set_tail("last line\n");
  big->mutable_stdout_info()->set_tail_preview_offset(12'345'668);
  *big->mutable_stderr_info() = Info(0, 0);
  auto* small = job.mutable_targets(1);
  *small->mutable_stdout_info() = Info(6, 0);
  small->mutable_stdout_info()->set_head("hello\n");
  *small->mutable_stderr_info() = Info(0, 0);

  std::ostringstream out;
  PrintJob(job, /*outputs=*/true, out, absl::Now());
  const std::string text = out.str();
  EXPECT_THAT(text, HasSubstr("Stored output:  first 1 MiB + last 3 MiB per "
                              "stream\n"));
  EXPECT_THAT(text, HasSubstr("TARGET    RESULT   STDOUT                    "
                              "           STDERR\n"));
  EXPECT_THAT(text, HasSubstr("web-1000  unknown  12,345,678 B (8,151,374 "
                              "not stored)  0 B\n"));
  EXPECT_THAT(text, HasSubstr("web-1001  unknown  6 B"));
  EXPECT_THAT(
      text,
      HasSubstr("==== web-1000 stdout: 12,345,678 bytes, 8,151,374 not "
                "stored ====\n"
                "first line\nsec\n"
                "---- 12,345,654 bytes not shown (8,151,374 not stored); "
                "read what is stored: varanctl jobs logs job-1 -t web-1000 "
                "----\n"
                "last line\n"));
  // A stream shown whole has nothing between; empty streams no block.
  EXPECT_THAT(text, HasSubstr("==== web-1001 stdout: 6 bytes ====\nhello\n"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("stderr:")));
}

TEST(PrintJobTest, OlderCoreWithoutOutputInfo) {
  varan::v1::Job job = JobWithTargets(1);
  job.set_capture_limit_bytes(4 << 20);
  std::ostringstream out;
  PrintJob(job, /*outputs=*/true, out, absl::Now());
  EXPECT_THAT(out.str(), HasSubstr("Stored output:  4 MiB per stream\n"));
  EXPECT_THAT(out.str(), HasSubstr("web-1000  unknown  -       -\n"));
}

}  // namespace
}  // namespace varan::cli

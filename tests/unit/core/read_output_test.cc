// Tests for Jobs.ReadOutput (core/server/jobs_service.h, job_output.h)
// over an in-process gRPC channel, on a MemoryStore holding a finished job
// and its stored output: pieces of at most 1 MiB with skipped_bytes over the
// omitted middle, reading from an offset, follow ending once everything
// stored is sent, and the errors.
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/peer_guard.h"
#include "core/fleet/registry.h"
#include "core/jobs/dispatcher.h"
#include "core/server/auth.h"
#include "core/server/blocking_work.h"
#include "core/server/jobs_service.h"
#include "core/server/tokens.h"
#include "core/store/memory_store.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/unit/core/fake_links.h"

namespace varan::core {
namespace {

using varan::v1::OutputPiece;

constexpr uint64_t kMiB = 1 << 20;

// With the pool core runs it on (every read of the store on its threads),
// and without one (read in the reactions).
class ReadOutputTest : public ::testing::TestWithParam<bool> {
 protected:
  ReadOutputTest()
      : fleet_(&clock_, FleetOptions{}, &store_),
        dispatcher_(&fleet_, &links_, &store_, &clock_, DispatcherOptions{}),
        tokens_(&clock_, &store_),
        guard_(&clock_, PeerGuardOptions{}),
        auth_(&tokens_, &guard_),
        service_(&auth_, &dispatcher_, nullptr, GetParam() ? &work_ : nullptr) {
    tokens_.SetBootstrap({BootstrapToken{"admin", "test", "s3cret"}}, {});
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    stub_ = varan::v1::Jobs::NewStub(
        server_->InProcessChannel(grpc::ChannelArguments()));
    StoreFinishedJob();
  }
  ~ReadOutputTest() override { server_->Shutdown(); }

  // Job "j1" with target "p1", finished, and 3 MiB of stdout of which the
  // first and the last MiB are stored.
  void StoreFinishedJob() {
    varan::v1::Job job;
    job.set_id("j1");
    job.mutable_spec()->add_argv("cat");
    job.add_targets()->set_name("p1");
    store_.CreateJob(job, {});
    varan::v1::JobEvent accepted;
    accepted.set_job_id("j1");
    accepted.mutable_accepted()->add_targets("p1");
    store_.AppendEvents("j1", std::vector<varan::v1::JobEvent>{accepted});
    for (uint64_t i = 0; i < 3 * kMiB; ++i) {
      output_ += static_cast<char>('a' + i % 23);
    }
    store_.AppendOutput(OutputKey{"j1", "p1", varan::v1::OUTPUT_STREAM_STDOUT},
                        0, output_, OutputRetention{kMiB, kMiB}, {});
    job.set_state(varan::v1::JOB_STATE_SUCCEEDED);
    job.mutable_targets(0)->set_state(varan::v1::TARGET_STATE_EXITED);
    store_.FinishJob(job, {});
    ASSERT_TRUE(store_.Sync().ok());
  }

  // Reads the whole stream of `request`; `*status` is how it ended.
  std::vector<OutputPiece> Read(const varan::v1::ReadOutputRequest& request,
                                grpc::Status* status) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer s3cret");
    auto reader = stub_->ReadOutput(&context, request);
    std::vector<OutputPiece> pieces;
    OutputPiece piece;
    while (reader->Read(&piece)) pieces.push_back(piece);
    *status = reader->Finish();
    return pieces;
  }

  static varan::v1::ReadOutputRequest Request(const std::string& job,
                                              const std::string& target,
                                              uint64_t offset = 0) {
    varan::v1::ReadOutputRequest r;
    r.set_job_id(job);
    r.set_target(target);
    r.set_stream(varan::v1::OUTPUT_STREAM_STDOUT);
    r.set_offset(offset);
    return r;
  }

  FakeClock clock_;
  MemoryStore store_;
  FakeLinks links_;
  FleetRegistry fleet_;
  Dispatcher dispatcher_;
  TokenRegistry tokens_;
  PeerGuard guard_;
  Authenticator auth_;
  BlockingWork work_;
  JobsService service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<varan::v1::Jobs::Stub> stub_;
  std::string output_;
};

TEST_P(ReadOutputTest, StreamsWhatIsStoredInPiecesBelowOneMiB) {
  for (bool follow : {false, true}) {
    auto request = Request("j1", "p1");
    request.set_follow(follow);
    grpc::Status status;
    const std::vector<OutputPiece> pieces = Read(request, &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    std::string head;
    std::string tail;
    uint64_t skipped = 0;
    for (const OutputPiece& p : pieces) {
      EXPECT_LT(p.ByteSizeLong(), kMiB);
      EXPECT_EQ(p.total_bytes(), 3 * kMiB);
      skipped += p.skipped_bytes();
      (p.offset() < kMiB ? head : tail) += p.data();
    }
    // The stored head and tail, and the omitted middle as skipped bytes.
    EXPECT_EQ(skipped, kMiB);
    EXPECT_EQ(head, output_.substr(0, kMiB));
    EXPECT_EQ(tail, output_.substr(2 * kMiB));
    ASSERT_GE(pieces.size(), 2u);
  }
}

TEST_P(ReadOutputTest, ReadsFromAnOffsetSkippingToTheNextStoredByte) {
  grpc::Status status;
  auto pieces = Read(Request("j1", "p1", kMiB + kMiB / 2), &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_FALSE(pieces.empty());
  EXPECT_EQ(pieces[0].offset(), 2 * kMiB);
  EXPECT_EQ(pieces[0].skipped_bytes(), kMiB / 2);
  // Past the end: nothing.
  pieces = Read(Request("j1", "p1", 5 * kMiB), &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(pieces.empty());
  // A stream without output: nothing, OK.
  auto request = Request("j1", "p1");
  request.set_stream(varan::v1::OUTPUT_STREAM_STDERR);
  pieces = Read(request, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(pieces.empty());
}

TEST_P(ReadOutputTest, RefusesUnknownJobsTargetsAndUnspecifiedStreams) {
  grpc::Status status;
  Read(Request("nope", "p1"), &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  Read(Request("j1", "p9"), &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("p9"));
  auto request = Request("j1", "p1");
  request.set_stream(varan::v1::OUTPUT_STREAM_UNSPECIFIED);
  Read(request, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(ReadOutputTest, FollowWaitsForMoreUntilTheTargetIsFinalAndAllIsSent) {
  varan::v1::RegisterRequest reg;
  reg.set_name("live");
  reg.set_advertise_address("[::1]:7701");
  auto added = fleet_.Register(reg, "::1");
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_TRUE(fleet_.Heartbeat(added->id, added->credential, {}, "::1").ok());
  varan::v1::DispatchRequest dispatch;
  dispatch.mutable_spec()->add_argv("cat");
  auto job = dispatcher_.Dispatch(dispatch, "test");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(store_.Sync().ok());
  ASSERT_EQ(links_.calls().size(), 1u);
  FakeCall* call = links_.calls()[0];
  call->Start(42);
  const OutputKey key{(*job)->id(), "live", varan::v1::OUTPUT_STREAM_STDOUT};
  store_.AppendOutput(key, 0, "hello ", OutputRetention{kMiB, kMiB}, {});
  ASSERT_TRUE(store_.Sync().ok());

  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer s3cret");
  auto request = Request((*job)->id(), "live");
  request.set_follow(true);
  auto reader = stub_->ReadOutput(&context, request);
  OutputPiece piece;
  ASSERT_TRUE(reader->Read(&piece));
  EXPECT_EQ(piece.data(), "hello ");
  // The target runs on: the stream waits for more.
  store_.AppendOutput(key, 6, "world", OutputRetention{kMiB, kMiB}, {});
  ASSERT_TRUE(reader->Read(&piece));
  EXPECT_EQ(piece.offset(), 6u);
  EXPECT_EQ(piece.data(), "world");
  EXPECT_EQ(piece.skipped_bytes(), 0u);
  // Once the target is final and its job's record committed, it ends.
  call->Exit(varan::v1::ExitStatus::KIND_EXITED, 0);  // and ends the call
  EXPECT_FALSE(reader->Read(&piece));
  const grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
}

INSTANTIATE_TEST_SUITE_P(Work, ReadOutputTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return param.param ? "OnBlockingWork"
                                              : "InReactions";
                         });

}  // namespace
}  // namespace varan::core

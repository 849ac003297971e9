// The output plane through the real binaries (issue #16, "Must show"):
// every byte reaches Exec's caller and varanctl byte-exact whatever the
// size, a slow reader slows the command instead of growing core's or the
// periphery's memory, a lagging WatchJob follower gets an explicit
// output_gap, stored output keeps head and tail (varanctl jobs get / jobs
// logs, ReadOutput), survives kill -9 of core, every answer stays far below
// gRPC's 4 MiB limit, and bad output from a periphery harms nothing else.
//
// Output is checked against pattern.h's reproducible stream, written by
// varan_pattern_gen on the periphery.
#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/grpc_util.h"
#include "common/pki.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "tests/integration/pattern.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;
using varan::v1::JobEvent;
using varan::v1::OutputPiece;

constexpr uint64_t kMiB = 1024 * 1024;
// What a test accepts as the size of any answer core gives: far below
// gRPC's default 4 MiB receive limit.
constexpr size_t kAnswerBound = kMiB;

// The shell command running the generator: `bytes` of stream `seed`, at
// most `rate` bytes per second (0: as fast as it can write), then `exit`.
std::string Gen(uint64_t bytes, uint64_t seed, uint64_t rate = 0,
                int exit = 0) {
  return absl::StrCat(BinPath("varan_pattern_gen"), " ", bytes, " ", seed, " ",
                      rate, " ", exit);
}

varan::v1::DispatchRequest On(const std::string& periphery,
                              const std::string& shell) {
  varan::v1::DispatchRequest req;
  req.mutable_target()->add_names(periphery);
  req.mutable_spec()->set_shell(shell);
  return req;
}

bool IsStdout(const JobEvent& ev) {
  return ev.has_output() &&
         ev.output().stream() == varan::v1::OUTPUT_STREAM_STDOUT;
}

// Bytes a process wrote so far (/proc/PID/io wchar), or -1.
int64_t BytesWritten(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/io"));
  std::string line;
  while (std::getline(in, line)) {
    int64_t n = 0;
    if (line.rfind("wchar:", 0) == 0 &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(6)), &n)) {
      return n;
    }
  }
  return -1;
}

class OutputTest : public ::testing::Test {
 protected:
  void StartCore(std::vector<std::string> extra_args = {}) {
    fleet_ = std::make_unique<TestFleet>(std::move(extra_args));
    fleet_->StartCore();
  }

  std::string Token() {
    return std::string(absl::StripTrailingAsciiWhitespace(
        ReadFile(fleet_->admin_token_file())));
  }
  // A raw Jobs stub with gRPC's default limits (4 MiB receive).
  std::unique_ptr<varan::v1::Jobs::Stub> Stub() {
    return varan::v1::Jobs::NewStub(fleet_->Channel());
  }
  void Authorize(grpc::ClientContext* ctx) {
    ctx->AddMetadata("authorization", BearerHeader(Token()));
  }

  std::string MustDispatch(const varan::v1::DispatchRequest& req) {
    auto resp = fleet_->client()->Dispatch(req);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->job_id() : "";
  }

  // The stored output of one stream (ReadOutput without follow), each
  // piece's size checked.
  struct Stored {
    grpc::Status status;
    std::vector<OutputPiece> pieces;
    // The pieces' data, concatenated.
    std::string data;
    uint64_t skipped = 0;
  };
  Stored ReadStored(
      const std::string& job_id, const std::string& target,
      varan::v1::OutputStream stream = varan::v1::OUTPUT_STREAM_STDOUT) {
    auto stub = Stub();
    grpc::ClientContext ctx;
    Authorize(&ctx);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    varan::v1::ReadOutputRequest req;
    req.set_job_id(job_id);
    req.set_target(target);
    req.set_stream(stream);
    auto reader = stub->ReadOutput(&ctx, req);
    Stored out;
    OutputPiece piece;
    while (reader->Read(&piece)) {
      EXPECT_LE(piece.data().size(), kMiB);
      EXPECT_LT(piece.ByteSizeLong(), kAnswerBound + 1024);
      out.data += piece.data();
      out.skipped += piece.skipped_bytes();
      out.pieces.push_back(piece);
    }
    out.status = reader->Finish();
    return out;
  }

  // Every answer about job `id` stays far below 4 MiB: GetJob (with and
  // without previews, through a client with the default receive limit),
  // ListJobs.
  void ExpectSmallAnswers(const std::string& id) {
    auto stub = Stub();
    for (uint32_t preview : {0u, 65536u}) {
      grpc::ClientContext ctx;
      Authorize(&ctx);
      varan::v1::GetJobRequest req;
      req.set_job_id(id);
      req.set_preview_bytes(preview);
      varan::v1::Job job;
      grpc::Status s = stub->GetJob(&ctx, req, &job);
      EXPECT_TRUE(s.ok()) << "GetJob preview " << preview << ": "
                          << s.error_message();
      EXPECT_LT(job.ByteSizeLong(), kAnswerBound)
          << "GetJob preview " << preview;
      for (const auto& t : job.targets()) {
        EXPECT_TRUE(t.stdout().empty());
        EXPECT_LE(t.stdout_info().head().size() + t.stdout_info().tail().size(),
                  preview);
      }
    }
    grpc::ClientContext ctx;
    Authorize(&ctx);
    varan::v1::ListJobsResponse list;
    grpc::Status s = stub->ListJobs(&ctx, varan::v1::ListJobsRequest(), &list);
    EXPECT_TRUE(s.ok()) << "ListJobs: " << s.error_message();
    EXPECT_LT(list.ByteSizeLong(), kAnswerBound);
    auto job = fleet_->client()->GetJob(id);
    EXPECT_TRUE(job.ok()) << job.status();
  }

  std::unique_ptr<TestFleet> fleet_;
};

// 20 MB of random bytes through `varanctl exec --no-prefix` with default
// settings, to a periphery core dials and to one on a tunnel: every byte,
// and varanctl's exit code is the command's.
TEST_F(OutputTest, TwentyMegabytesThroughVaranctlByteExact) {
  StartCore();
  fleet_->StartPeriphery("web-1");
  fleet_->StartPeriphery("tun-1", {}, {"--tunnel", "--no-listen"});
  std::string content(20'000'000, '\0');
  std::mt19937_64 rng(std::random_device{}());
  for (size_t i = 0; i + 8 <= content.size(); i += 8) {
    uint64_t word = rng();
    std::memcpy(content.data() + i, &word, 8);
  }
  const std::string file = fleet_->dir().File("dump.bin");
  WriteFile(file, content);

  for (const std::string name : {"web-1", "tun-1"}) {
    RunResult r =
        fleet_->Ctl({"exec", "-n", name, "--no-prefix", "--", "cat", file});
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
    EXPECT_EQ(r.out.size(), content.size()) << name << ": " << r.err;
    EXPECT_TRUE(r.out == content) << name << ": the bytes differ";
  }
  // A failing command: every byte still, and its exit code.
  RunResult r = fleet_->Ctl({"exec", "-n", "web-1", "--no-prefix", "--shell",
                             "--", absl::StrCat("cat ", file, "; exit 3")});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out.size(), content.size());
  EXPECT_TRUE(r.out == content) << "the bytes differ";
}

// 1 GiB through Jobs.Exec (the C++ client), checked byte by byte at its
// offset, in order, with no gap event.
TEST_F(OutputTest, OneGibibyteThroughExecByteExact) {
  StartCore();
  fleet_->StartPeriphery("p1");
  constexpr uint64_t kTotal = 1024 * kMiB;
  constexpr uint64_t kSeed = 42;
  uint64_t received = 0;
  int64_t first_bad = -1;
  int gaps = 0;
  size_t biggest_event = 0;
  std::string job_id;
  varan::v1::JobEvent last;
  std::string expected;
  const absl::Time start = absl::Now();
  absl::Status s = fleet_->client()->Exec(
      On("p1", Gen(kTotal, kSeed)), [&](const JobEvent& ev) {
        biggest_event = std::max(biggest_event, ev.ByteSizeLong());
        if (ev.has_accepted()) job_id = ev.job_id();
        if (ev.has_output_gap()) ++gaps;
        if (IsStdout(ev)) {
          const std::string& data = ev.output().data();
          expected.resize(data.size());
          FillPattern(kSeed, received, expected.data(), data.size());
          if (first_bad < 0 && data != expected) {
            first_bad = static_cast<int64_t>(received);
          }
          received += data.size();
        }
        last = ev;
      });
  const absl::Duration took = absl::Now() - start;
  std::cout << "1 GiB through Exec took " << took << " ("
            << static_cast<double>(received) / kMiB /
                   absl::ToDoubleSeconds(took)
            << " MiB/s)\n";
  RecordProperty("gib_seconds", absl::StrCat(absl::ToDoubleSeconds(took)));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(received, kTotal);
  EXPECT_EQ(first_bad, -1) << "first wrong byte in the chunk at " << first_bad;
  EXPECT_EQ(gaps, 0) << "Exec's caller never gets an output_gap";
  EXPECT_LT(biggest_event, kAnswerBound + 1024);
  ASSERT_TRUE(last.has_job_finished());
  EXPECT_EQ(last.job_finished().state(), varan::v1::JOB_STATE_SUCCEEDED);
  auto job = fleet_->client()->GetJob(job_id);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->targets_size(), 1);
  EXPECT_EQ(job->targets(0).stdout_info().total_bytes(), kTotal);
  // Stored: the default head (1 MiB) and tail (3 MiB), the middle counted.
  EXPECT_EQ(job->targets(0).stdout_info().head_end(), kMiB);
  EXPECT_EQ(job->targets(0).stdout_info().tail_start(), kTotal - 3 * kMiB);
  EXPECT_EQ(job->targets(0).stdout_info().omitted_bytes(), kTotal - 4 * kMiB);
  ExpectSmallAnswers(job_id);
}

// A reader taking ~1 MB/s of a generator that could write GBs: the command
// is slowed down (it has written little more than was read) and neither
// core's nor the periphery's RSS grows by more than 64 MiB.
TEST_F(OutputTest, SlowReaderSlowsTheCommandNotMemory) {
#ifdef VARAN_SANITIZED
  GTEST_SKIP() << "RSS is not measurable under a sanitizer's allocator";
#endif
  StartCore();
  Daemon* periphery = fleet_->StartPeriphery("p1");
  // Warm up both daemons (threads, channels) before the baseline.
  ASSERT_TRUE(fleet_->client()
                  ->Exec(On("p1", Gen(4 * kMiB, 1)), [](const JobEvent&) {})
                  .ok());
  const long core_base = RssKb(fleet_->core()->pid());
  const long periphery_base = RssKb(periphery->pid());
  ASSERT_GT(core_base, 0);
  ASSERT_GT(periphery_base, 0);

  constexpr uint64_t kSeed = 3;
  constexpr double kRate = 1e6;  // bytes per second the reader takes
  const std::string pid_file = fleet_->dir().File("gen.pid");
  std::atomic<uint64_t> received{0};
  std::atomic<bool> pace{true};
  std::atomic<bool> exact{true};
  std::string job_id;
  absl::Notification accepted;
  absl::Status exec_status;
  std::thread reader([&] {
    const absl::Time start = absl::Now();
    exec_status = fleet_->client()->Exec(
        On("p1", absl::StrCat("echo $$ > ", pid_file, "; exec ",
                              Gen(4096 * kMiB, kSeed))),
        [&](const JobEvent& ev) {
          if (ev.has_accepted()) {
            job_id = ev.job_id();
            accepted.Notify();
          }
          if (!IsStdout(ev)) return;
          const std::string& data = ev.output().data();
          if (pace && !MatchesPattern(kSeed, received, data)) exact = false;
          received += data.size();
          if (pace) {
            absl::SleepFor(start + absl::Seconds(received / kRate) -
                           absl::Now());
          }
        });
  });
  if (!accepted.WaitForNotificationWithTimeout(absl::Seconds(10))) {
    reader.join();  // Exec failed before the job existed
    FAIL() << exec_status;
  }
  long core_peak = core_base, periphery_peak = periphery_base;
  const absl::Time until = absl::Now() + absl::Seconds(6);
  while (absl::Now() < until) {
    core_peak = std::max(core_peak, RssKb(fleet_->core()->pid()));
    periphery_peak = std::max(periphery_peak, RssKb(periphery->pid()));
    absl::SleepFor(absl::Milliseconds(100));
  }
  int64_t gen_pid = 0;
  const bool have_pid = absl::SimpleAtoi(
      absl::StripAsciiWhitespace(ReadFile(pid_file)), &gen_pid);
  const int64_t written =
      have_pid ? BytesWritten(static_cast<pid_t>(gen_pid)) : -1;
  const uint64_t read_so_far = received;
  auto job = fleet_->client()->GetJob(job_id);

  pace = false;
  EXPECT_TRUE(fleet_->client()->CancelJob(job_id).ok());
  reader.join();
  EXPECT_TRUE(exec_status.ok()) << exec_status;

  std::cout << "slow reader: read " << read_so_far << " B, generator wrote "
            << written << " B; RSS growth core "
            << (core_peak - core_base) / 1024 << " MiB, periphery "
            << (periphery_peak - periphery_base) / 1024 << " MiB\n";
  EXPECT_TRUE(exact) << "the slowly read bytes differ";
  EXPECT_GT(read_so_far, 2 * kMiB);
  ASSERT_GE(written, 0);
  EXPECT_LT(static_cast<uint64_t>(written), read_so_far + 64 * kMiB)
      << "the command was not slowed down: its output was buffered";
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), varan::v1::JOB_STATE_RUNNING);
  EXPECT_LE(core_peak - core_base, 64 * 1024) << "core RSS kB";
  EXPECT_LE(periphery_peak - periphery_base, 64 * 1024) << "periphery RSS kB";
  ExpectSmallAnswers(job_id);
}

// A WatchJob follower that stops reading while 64 MiB stream gets one
// explicit output_gap naming the missed bytes of the stream, then the
// events after it; what it got plus what it missed is the whole stream.
// Exec's caller meanwhile gets every byte and no gap.
TEST_F(OutputTest, LaggingFollowerGetsAnExplicitOutputGap) {
  StartCore();
  fleet_->StartPeriphery("p1");
  constexpr uint64_t kSeed = 9;
  constexpr uint64_t kFlood = 64 * kMiB;
  const std::string kFirst = "start\n";
  // The expected stdout: kFirst, then the pattern.
  auto expected = [&](uint64_t offset, size_t n) {
    std::string s;
    for (uint64_t at = offset; at < offset + n && at < kFirst.size(); ++at) {
      s += kFirst[at];
    }
    if (s.size() < n) {
      const uint64_t from = offset + s.size() - kFirst.size();
      s += Pattern(kSeed, from, n - s.size());
    }
    return s;
  };

  std::string job_id;
  absl::Notification accepted, exec_done;
  uint64_t exec_bytes = 0;
  int exec_gaps = 0;
  bool exec_exact = true;
  absl::Status exec_status;
  std::thread exec([&] {
    exec_status = fleet_->client()->Exec(
        On("p1", absl::StrCat("echo start; sleep 1; ", Gen(kFlood, kSeed))),
        [&](const JobEvent& ev) {
          if (ev.has_accepted()) {
            job_id = ev.job_id();
            accepted.Notify();
          }
          if (ev.has_output_gap()) ++exec_gaps;
          if (IsStdout(ev)) {
            if (exec_exact &&
                ev.output().data() !=
                    expected(exec_bytes, ev.output().data().size()))
              exec_exact = false;
            exec_bytes += ev.output().data().size();
          }
        });
    exec_done.Notify();
  });
  if (!accepted.WaitForNotificationWithTimeout(absl::Seconds(10))) {
    exec.join();  // Exec failed before the job existed
    FAIL() << exec_status;
  }

  std::vector<JobEvent> events;
  uint64_t offset = 0;  // of the follower's stdout: got or missed
  bool follower_exact = true;
  absl::Status watch =
      fleet_->client()->WatchJob(job_id, 0, [&](const JobEvent& ev) {
        if (IsStdout(ev)) {
          const std::string& data = ev.output().data();
          if (follower_exact && data != expected(offset, data.size()))
            follower_exact = false;
          offset += data.size();
          // Lag: stop reading from the first output until the flood is
          // over.
          if (offset == data.size())
            exec_done.WaitForNotificationWithTimeout(absl::Seconds(60));
        }
        if (ev.has_output_gap()) {
          for (const auto& m : ev.output_gap().missed()) {
            EXPECT_EQ(m.target(), "p1");
            if (m.stream() != varan::v1::OUTPUT_STREAM_STDOUT) continue;
            EXPECT_EQ(m.offset(), offset) << "a silent hole before the gap";
            offset += m.bytes();
          }
        }
        events.push_back(ev);
      });
  exec.join();
  ASSERT_TRUE(exec_status.ok()) << exec_status;
  EXPECT_EQ(exec_bytes, kFirst.size() + kFlood);
  EXPECT_TRUE(exec_exact);
  EXPECT_EQ(exec_gaps, 0) << "Exec's caller never gets an output_gap";

  ASSERT_TRUE(watch.ok()) << watch;
  int gaps = 0;
  uint64_t missed = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    const JobEvent& ev = events[i];
    // Sequences have no holes: an output_gap stands for first_sequence to
    // its own.
    const uint64_t first =
        ev.has_output_gap() ? ev.output_gap().first_sequence() : ev.sequence();
    EXPECT_EQ(first, i == 0 ? 0 : events[i - 1].sequence() + 1) << i;
    if (!ev.has_output_gap()) continue;
    ++gaps;
    EXPECT_LE(ev.output_gap().first_sequence(), ev.sequence());
    EXPECT_GT(ev.output_gap().missed_size(), 0);
    for (const auto& m : ev.output_gap().missed()) missed += m.bytes();
    // Events continue after the gap.
    EXPECT_LT(i + 1, events.size());
  }
  EXPECT_GE(gaps, 1) << "the follower lagged by 64 MiB without a gap event";
  EXPECT_GT(missed, 0u);
  EXPECT_EQ(offset, kFirst.size() + kFlood)
      << "what the follower got plus what it missed is not the stream";
  EXPECT_TRUE(follower_exact);
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(events.back().has_job_finished());
  ExpectSmallAnswers(job_id);
}

// A job whose output passed its stored limit (head 64 KiB + tail 64 KiB of
// 1.2 MB): varanctl exec still prints all of it; `jobs get` shows the head,
// the tail and the count between; `jobs logs` prints exactly the stored
// head and tail; ReadOutput says what it skipped.
TEST_F(OutputTest, JobsGetAndLogsShowHeadTailAndTheCountBetween) {
  StartCore();
  fleet_->StartPeriphery("p1");
  std::string all;
  for (int i = 1; i <= 100000; ++i) {
    all += absl::StrCat("line-", std::string(6 - std::to_string(i).size(), '0'),
                        i, "\n");
  }
  ASSERT_EQ(all.size(), 1'200'000u);
  constexpr uint64_t kKeep = 65536;
  const uint64_t omitted = all.size() - 2 * kKeep;  // 1068928
  const std::string head = all.substr(0, kKeep);
  const std::string tail = all.substr(all.size() - kKeep);

  RunResult r = fleet_->Ctl({"exec", "-n", "p1", "--no-prefix", "--output-head",
                             "65536", "--output-tail", "65536", "--shell", "--",
                             "seq -f 'line-%06g' 1 100000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out == all) << "live output was cut: " << r.out.size();

  auto list = fleet_->client()->ListJobs({});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_GE(list->jobs_size(), 1);
  const std::string id = list->jobs(0).id();
  auto job = fleet_->client()->GetJob(id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->output_head_bytes(), kKeep);
  EXPECT_EQ(job->output_tail_bytes(), kKeep);
  ASSERT_EQ(job->targets_size(), 1);
  const auto& info = job->targets(0).stdout_info();
  EXPECT_EQ(info.total_bytes(), all.size());
  EXPECT_EQ(info.head_end(), kKeep);
  EXPECT_EQ(info.tail_start(), all.size() - kKeep);
  EXPECT_EQ(info.omitted_bytes(), omitted);
  EXPECT_EQ(job->targets(0).stdout_uncaptured_bytes(), omitted);

  // Previews: the first half of preview_bytes and the last half.
  {
    auto stub = Stub();
    grpc::ClientContext ctx;
    Authorize(&ctx);
    varan::v1::GetJobRequest req;
    req.set_job_id(id);
    req.set_preview_bytes(4096);
    varan::v1::Job with_preview;
    ASSERT_TRUE(stub->GetJob(&ctx, req, &with_preview).ok());
    const auto& p = with_preview.targets(0).stdout_info();
    EXPECT_EQ(p.head(), all.substr(0, 2048));
    EXPECT_EQ(p.tail(), all.substr(all.size() - 2048));
    EXPECT_EQ(p.tail_preview_offset(), all.size() - 2048);
  }

  r = fleet_->Ctl({"jobs", "get", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("line-000001"));
  EXPECT_THAT(r.out, HasSubstr("line-100000"));
  EXPECT_TRUE(absl::StrContains(r.out, "1068928") ||
              absl::StrContains(r.out, "1,068,928"))
      << "the count of bytes between head and tail is not shown:\n"
      << r.out;

  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"jobs", "logs", id},
        std::vector<std::string>{"jobs", "logs", id, "-t", "p1"}}) {
    r = fleet_->Ctl(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.size(), 2 * kKeep);
    EXPECT_TRUE(r.out == head + tail) << "jobs logs is not head + tail";
    EXPECT_TRUE(absl::StrContains(r.err, "1068928") ||
                absl::StrContains(r.err, "1,068,928"))
        << "no note of the bytes not stored: " << r.err;
  }
  r = fleet_->Ctl({"jobs", "logs", id, "--stderr"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");

  Stored stored = ReadStored(id, "p1");
  ASSERT_TRUE(stored.status.ok()) << stored.status.error_message();
  EXPECT_TRUE(stored.data == head + tail);
  EXPECT_EQ(stored.skipped, omitted);
  ASSERT_FALSE(stored.pieces.empty());
  EXPECT_EQ(stored.pieces.front().offset(), 0u);
  EXPECT_EQ(stored.pieces.back().offset() + stored.pieces.back().data().size(),
            all.size());
  ExpectSmallAnswers(id);
}

// kill -9 of core while a command streams: after the restart ReadOutput
// serves what was committed (the head at least, byte-exact, every stored
// byte at its offset), and the job becomes final once the periphery
// reports.
TEST_F(OutputTest, StoredOutputSurvivesKillNineOfCoreMidStream) {
  StartCore({"--heartbeat-interval", "0.3", "--restart-grace", "5"});
  fleet_->StartPeriphery("p1");
  constexpr uint64_t kSeed = 11;
  constexpr uint64_t kTotal = 8 * kMiB;
  const std::string id = MustDispatch(On("p1", Gen(kTotal, kSeed, 2 * kMiB)));
  ASSERT_FALSE(id.empty());
  // How many bytes from offset 0 are stored, contiguous.
  auto stored_head = [&] {
    Stored s = ReadStored(id, "p1");
    uint64_t contiguous = 0;
    for (const auto& p : s.pieces) {
      if (p.offset() != contiguous) break;
      contiguous += p.data().size();
    }
    return contiguous;
  };
  ASSERT_TRUE(WaitFor([&] { return stored_head() >= kMiB; }, absl::Seconds(15)))
      << "the head was never stored";
  auto before = fleet_->client()->GetJob(id);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->state(), varan::v1::JOB_STATE_RUNNING)
      << "the command ended before the kill: the test proves nothing";

  EXPECT_EQ(fleet_->StopCore(SIGKILL), 128 + SIGKILL);
  fleet_->StartCore();

  Stored after = ReadStored(id, "p1");
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  ASSERT_FALSE(after.pieces.empty());
  EXPECT_EQ(after.pieces.front().offset(), 0u);
  uint64_t contiguous = 0;
  for (const auto& p : after.pieces) {
    EXPECT_TRUE(MatchesPattern(kSeed, p.offset(), p.data()))
        << "stored bytes at " << p.offset() << " differ";
    if (p.offset() == contiguous) contiguous += p.data().size();
  }
  EXPECT_GE(contiguous, kMiB) << "the committed head was lost";

  varan::v1::Job job = fleet_->WaitFinished(id, absl::Seconds(40));
  ASSERT_EQ(job.targets_size(), 1);
  EXPECT_EQ(job.targets(0).state(), varan::v1::TARGET_STATE_EXITED)
      << job.DebugString();
  EXPECT_EQ(job.targets(0).exit_status().code(), 0);
  Stored final_output = ReadStored(id, "p1");
  ASSERT_TRUE(final_output.status.ok());
  for (const auto& p : final_output.pieces) {
    EXPECT_TRUE(MatchesPattern(kSeed, p.offset(), p.data()))
        << "stored bytes at " << p.offset() << " differ";
  }
  ExpectSmallAnswers(id);
}

// A fake periphery on the tunnel sends output for an unknown execution,
// a duplicate, out-of-order chunks and an absurd offset: core logs why,
// stays up, stores nothing twice, and a job on a real periphery of the
// same core meanwhile completes byte-exact.
TEST_F(OutputTest, BadOutputFromAPeripheryHarmsNothingElse) {
  StartCore();
  fleet_->StartPeriphery("real-1");
  auto registry = varan::v1::Registry::NewStub(fleet_->Channel());
  grpc::ClientContext tunnel_ctx;
  tunnel_ctx.AddMetadata(
      "authorization",
      BearerHeader(std::string(absl::StripTrailingAsciiWhitespace(
          ReadFile(fleet_->join_token_file())))));
  tunnel_ctx.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(60));
  auto tunnel = registry->Connect(&tunnel_ctx);
  varan::v1::TunnelUp up;
  up.mutable_hello()->mutable_register_()->set_name("fake-1");
  up.mutable_hello()->mutable_register_()->set_csr(
      *pki::CreateRequest(*pki::NewPrivateKey(), "fake-1"));
  ASSERT_TRUE(tunnel->Write(up));
  varan::v1::TunnelDown down;
  ASSERT_TRUE(tunnel->Read(&down));
  ASSERT_TRUE(down.has_opened()) << down.DebugString();
  const std::string fake_id = down.opened().periphery_id();
  up.Clear();
  up.mutable_heartbeat()->set_periphery_id(fake_id);
  ASSERT_TRUE(tunnel->Write(up));
  varan::v1::Target fake_target;
  fake_target.add_names("fake-1");
  ASSERT_TRUE(WaitFor([&] {
    auto l = fleet_->client()->ListPeripheries(fake_target);
    return l.ok() && l->size() == 1 &&
           (*l)[0].state() == varan::v1::PERIPHERY_STATE_ONLINE;
  }));

  const std::string fake_job = MustDispatch(On("fake-1", "anything"));
  std::string execution;
  while (execution.empty() && tunnel->Read(&down)) {
    if (down.has_execute()) execution = down.execute().execution_id();
  }
  ASSERT_FALSE(execution.empty());

  // The real job streams meanwhile.
  constexpr uint64_t kSeed = 5;
  uint64_t real_bytes = 0;
  bool real_exact = true;
  varan::v1::JobEvent real_last;
  absl::Status real_status;
  std::thread real([&] {
    real_status = fleet_->client()->Exec(
        On("real-1", Gen(16 * kMiB, kSeed, 8 * kMiB)), [&](const JobEvent& ev) {
          if (IsStdout(ev)) {
            if (!MatchesPattern(kSeed, real_bytes, ev.output().data()))
              real_exact = false;
            real_bytes += ev.output().data().size();
          }
          real_last = ev;
        });
  });

  auto send = [&](const std::string& exec_id, auto fill) {
    varan::v1::TunnelUp msg;
    msg.mutable_event()->set_execution_id(exec_id);
    fill(msg.mutable_event()->mutable_event());
    return tunnel->Write(msg);
  };
  auto output = [&](const std::string& exec_id, uint64_t sequence,
                    uint64_t offset, const std::string& data) {
    return send(exec_id, [&](varan::v1::ExecuteEvent* ev) {
      ev->mutable_output()->set_stream(varan::v1::OUTPUT_STREAM_STDOUT);
      ev->mutable_output()->set_sequence(sequence);
      ev->mutable_output()->set_offset(offset);
      ev->mutable_output()->set_data(data);
    });
  };
  const std::string unknown = absl::StrCat("nosuchjob/fake-1");
  EXPECT_TRUE(output(unknown, 0, 0, "for nobody"));
  EXPECT_TRUE(output("no-slash-at-all", 0, 0, "for nobody"));
  EXPECT_TRUE(send(execution, [](varan::v1::ExecuteEvent* ev) {
    ev->mutable_started()->set_pid(4242);
  }));
  EXPECT_TRUE(output(execution, 0, 0, "hello "));
  EXPECT_TRUE(output(execution, 0, 0, "hello "));    // duplicate
  EXPECT_TRUE(output(execution, 2, 1000, "later"));  // a jump ahead
  EXPECT_TRUE(output(execution, 1, 6, "world"));     // late, behind
  EXPECT_TRUE(output(execution, 3, uint64_t{1} << 62, "absurd"));
  EXPECT_TRUE(send(execution, [](varan::v1::ExecuteEvent* ev) {
    ev->mutable_exited()->set_kind(varan::v1::ExitStatus::KIND_EXITED);
    ev->mutable_exited()->set_code(0);
  }));

  real.join();
  EXPECT_TRUE(real_status.ok()) << real_status;
  EXPECT_EQ(real_bytes, 16 * kMiB);
  EXPECT_TRUE(real_exact);
  EXPECT_TRUE(real_last.has_job_finished());
  EXPECT_EQ(real_last.job_finished().state(), varan::v1::JOB_STATE_SUCCEEDED);

  EXPECT_TRUE(fleet_->core()->Running()) << fleet_->core()->Log();
  varan::v1::Job job = fleet_->WaitFinished(fake_job);
  ASSERT_EQ(job.targets_size(), 1);
  const auto& info = job.targets(0).stdout_info();
  EXPECT_LT(info.total_bytes(), kMiB) << "the absurd offset was taken";
  EXPECT_GE(info.total_bytes(), 6u);
  Stored stored = ReadStored(fake_job, "fake-1");
  ASSERT_TRUE(stored.status.ok()) << stored.status.error_message();
  EXPECT_TRUE(absl::StartsWith(stored.data, "hello ")) << stored.data;
  EXPECT_THAT(stored.data, ::testing::Not(HasSubstr("hello hello")));
  EXPECT_THAT(stored.data, ::testing::Not(HasSubstr("absurd")));

  const std::string log = fleet_->core()->Log();
  EXPECT_THAT(log, HasSubstr(unknown)) << "no reason logged for it";
  EXPECT_THAT(log, HasSubstr("no-slash-at-all"));
  EXPECT_THAT(log, HasSubstr(execution));
  ExpectSmallAnswers(fake_job);
  tunnel_ctx.TryCancel();
  tunnel->Finish();
}

}  // namespace
}  // namespace varan::testing

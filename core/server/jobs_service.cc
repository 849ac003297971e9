#include "core/server/jobs_service.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "core/server/job_output.h"
#include "core/server/operator_call.h"

namespace varan::core {
namespace {

using varan::v1::JobEvent;
using varan::v1::ROLE_OPERATOR;
using varan::v1::ROLE_VIEWER;

// What an audit line says about a command: the argv or the shell line, and
// the names (never the values) of the environment it sets.
std::string DescribeCommand(const varan::v1::CommandSpec& spec) {
  std::string out;
  if (!spec.shell().empty()) {
    out = absl::StrCat("shell ", absl::CHexEscape(spec.shell()));
  } else {
    std::vector<std::string> words;
    for (const auto& w : spec.argv()) words.push_back(absl::CHexEscape(w));
    out = absl::StrCat("argv [", absl::StrJoin(words, " "), "]");
  }
  if (!spec.env().empty()) {
    std::vector<std::string> names;
    for (const auto& [k, v] : spec.env()) names.push_back(k);
    std::sort(names.begin(), names.end());
    absl::StrAppend(&out, " env {", absl::StrJoin(names, ","), "}");
  }
  return out;
}

std::string DescribeTarget(const varan::v1::Target& target) {
  std::string out = absl::StrCat("selector \"", target.selector(), "\"");
  if (!target.names().empty()) {
    absl::StrAppend(&out, " names [", absl::StrJoin(target.names(), ","), "]");
  }
  return out;
}

void AuditDispatch(const Caller& caller, const std::string& job_id,
                   size_t targets, const varan::v1::DispatchRequest& request) {
  spdlog::info("audit: {} from {} dispatched job {} to {} target(s): {}; {}",
               caller.name, caller.peer, job_id, targets,
               DescribeTarget(request.target()),
               DescribeCommand(request.spec()));
}

// Streams a job's events from a sequence number until the job finishes.
// One write in flight; the job's watcher callback drives writes that were
// waiting for new events. A pacing writer (Exec's) tells the job after each
// write how far it got. An output_gap event (output the job no longer
// keeps) is written like any other and the stream goes on past it. Deletes
// itself in OnDone.
class JobEventWriter final : public grpc::ServerWriteReactor<JobEvent> {
 public:
  // `job` null means `error` says why nothing is streamed.
  static JobEventWriter* Create(std::shared_ptr<Job> job, uint64_t from,
                                const grpc::Status& error,
                                bool pacing = false) {
    auto* w = new JobEventWriter(pacing);
    w->Begin(std::move(job), from, error);
    return w;
  }

  // A writer whose job is still being looked up (in the store, on another
  // thread): Begin starts it. Until then a cancellation only marks it (the
  // call cannot end under the look-up).
  static JobEventWriter* Later() {
    auto* w = new JobEventWriter(/*pacing=*/false);
    w->looking_up_ = true;
    return w;
  }

  // Streams `job`'s events from `from`, or ends with `error` (`job` null).
  void Begin(std::shared_ptr<Job> job, uint64_t from,
             const grpc::Status& error) {
    if (job == nullptr) {
      {
        absl::MutexLock lock(&mu_);
        looking_up_ = false;
      }
      FinishOnce(error);
      return;
    }
    job_ = std::move(job);
    {
      absl::MutexLock lock(&mu_);
      next_ = from;
    }
    watcher_ = job_->AddWatcher([this] { TryWrite(); }, pacing_);
    bool finish_now;
    {
      absl::MutexLock lock(&mu_);
      looking_up_ = false;
      // Canceled during the look-up: OnCancel left it to here (or to
      // OnWriteDone(false), with a write in flight).
      finish_now = cancelled_ && !writing_;
    }
    if (finish_now) {
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "canceled"));
      return;
    }
    TryWrite();
  }

  void OnWriteDone(bool ok) override {
    uint64_t next;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      // An output_gap event stands for several sequences, up to its own.
      if (ok) next_ = current_.sequence() + 1;
      next = next_;
    }
    if (ok && pacing_) job_->Consumed(watcher_, next);
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
      return;
    }
    TryWrite();
  }

  void OnCancel() override {
    bool idle;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (looking_up_) return;  // Begin finishes
      idle = !writing_;
    }
    // With a write in flight, OnWriteDone(false) finishes instead.
    if (idle) FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "canceled"));
  }

  void OnDone() override {
    if (job_ != nullptr) job_->RemoveWatcher(watcher_);
    delete this;
  }

 private:
  explicit JobEventWriter(bool pacing) : pacing_(pacing) {}

  void TryWrite() {
    Job::Read read;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      read = job_->EventAt(next_, &current_);
      if (read == Job::Read::kEvent) {
        writing_ = true;
        offsets_.Trim(next_, current_);
      }
    }
    if (read == Job::Read::kEvent) {
      StartWrite(&current_);
    } else if (read == Job::Read::kEnd) {
      FinishOnce(grpc::Status::OK);
    }
  }

  void FinishOnce(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(status);
  }

  // Set by Begin, before anything else reads them.
  std::shared_ptr<Job> job_;
  const bool pacing_;
  uint64_t watcher_ = 0;
  absl::Mutex mu_;
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool looking_up_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  // The event being written (a copy: an evicted sequence reads as the
  // output_gap event covering it).
  JobEvent current_;
  FollowerOffsets offsets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerUnaryReactor* JobsService::Dispatch(
    grpc::CallbackServerContext* context,
    const varan::v1::DispatchRequest* request,
    varan::v1::DispatchResponse* response) {
  Caller caller;
  if (grpc::Status s =
          auth_->AuthenticateOperator(*context, ROLE_OPERATOR, &caller);
      !s.ok()) {
    return Done(context, s);
  }
  // Answer once the job is committed (an id the caller holds survives a core
  // crash) and the response is filled, whichever comes last: the commit
  // callback runs on a store thread, possibly before Dispatch
  // returns here.
  struct Pending {
    grpc::ServerUnaryReactor* reactor;
    absl::Mutex mu;
    int waiting ABSL_GUARDED_BY(mu) = 2;
    grpc::Status status ABSL_GUARDED_BY(mu);
    void Arrive(const grpc::Status* error) {
      grpc::Status finish;
      {
        absl::MutexLock lock(&mu);
        if (error != nullptr) status = *error;
        if (--waiting > 0) return;
        finish = status;
      }
      reactor->Finish(finish);
    }
  };
  auto pending = std::make_shared<Pending>();
  pending->reactor = context->DefaultReactor();
  auto job = dispatcher_->Dispatch(
      *request, caller.name, [pending](const absl::Status& committed) {
        if (committed.ok()) {
          pending->Arrive(nullptr);
          return;
        }
        const grpc::Status error(grpc::StatusCode::UNAVAILABLE,
                                 absl::StrCat("core could not store the job: ",
                                              committed.message()));
        pending->Arrive(&error);
      });
  if (!job.ok()) {
    AddRetryAfterTrailer(job.status(), context);
    pending->reactor->Finish(ToGrpcStatus(job.status()));
    return pending->reactor;
  }
  response->set_job_id((*job)->id());
  const varan::v1::Job snapshot = (*job)->Snapshot();
  for (const auto& t : snapshot.targets()) response->add_targets(t.name());
  AuditDispatch(caller, (*job)->id(), snapshot.targets().size(), *request);
  grpc::ServerUnaryReactor* reactor = pending->reactor;
  pending->Arrive(nullptr);
  return reactor;
}

grpc::ServerWriteReactor<JobEvent>* JobsService::Exec(
    grpc::CallbackServerContext* context,
    const varan::v1::DispatchRequest* request) {
  Caller caller;
  if (grpc::Status s =
          auth_->AuthenticateOperator(*context, ROLE_OPERATOR, &caller);
      !s.ok()) {
    return JobEventWriter::Create(nullptr, 0, s);
  }
  auto job = dispatcher_->Dispatch(*request, caller.name);
  if (!job.ok()) {
    AddRetryAfterTrailer(job.status(), context);
    return JobEventWriter::Create(nullptr, 0, ToGrpcStatus(job.status()));
  }
  AuditDispatch(caller, (*job)->id(), (*job)->Snapshot().targets().size(),
                *request);
  return JobEventWriter::Create(*std::move(job), 0, grpc::Status::OK,
                                /*pacing=*/true);
}

grpc::ServerWriteReactor<JobEvent>* JobsService::WatchJob(
    grpc::CallbackServerContext* context,
    const varan::v1::WatchJobRequest* request) {
  Caller caller;
  if (grpc::Status s =
          auth_->AuthenticateOperator(*context, ROLE_VIEWER, &caller);
      !s.ok()) {
    return JobEventWriter::Create(nullptr, 0, s);
  }
  if (std::string to = ForwardTo(request->job_id()); !to.empty()) {
    return forward_->Watch(to, caller.name, *request);
  }
  if (work_ == nullptr || dispatcher_->Running(request->job_id())) {
    auto [job, status] = JobToWatch(request->job_id());
    return JobEventWriter::Create(std::move(job), request->from_sequence(),
                                  status);
  }
  // A finished job is read back from the store: on work_'s threads.
  JobEventWriter* writer = JobEventWriter::Later();
  absl::Status queued = work_->Run([this, writer, request] {
    auto [job, status] = JobToWatch(request->job_id());
    writer->Begin(std::move(job), request->from_sequence(), status);
  });
  if (!queued.ok()) {
    AddRetryAfterTrailer(queued, context);
    writer->Begin(nullptr, 0, ToGrpcStatus(queued));
  }
  return writer;
}

std::pair<std::shared_ptr<Job>, grpc::Status> JobsService::JobToWatch(
    const std::string& job_id) const {
  // Asked before Find: a job taken over between the two is then refused
  // (retried), never watched in a stored copy that no longer changes.
  const bool running_here = dispatcher_->Running(job_id);
  auto job = dispatcher_->Find(job_id);
  if (!job.ok()) return {nullptr, ToGrpcStatus(job.status())};
  if (forward_ != nullptr && !running_here &&
      (*job)->Snapshot().state() == varan::v1::JOB_STATE_RUNNING) {
    // Stored as running, run by nobody yet: its replica died and the jobs
    // of dead replicas are being taken over.
    return {nullptr,
            grpc::Status(grpc::StatusCode::UNAVAILABLE,
                         absl::StrCat("job ", job_id,
                                      " is being taken over by another core "
                                      "replica (the one running it died); "
                                      "watch it again in a few seconds"))};
  }
  return {*std::move(job), grpc::Status::OK};
}

grpc::ServerUnaryReactor* JobsService::GetJob(
    grpc::CallbackServerContext* context,
    const varan::v1::GetJobRequest* request, varan::v1::Job* response) {
  return OperatorBlockingAsync(
      auth_, work_, ROLE_VIEWER, context, response,
      [this, request](const Caller& caller, auto done) {
        if (std::string to = ForwardTo(request->job_id()); !to.empty()) {
          forward_->Get(to, caller.name, *request, std::move(done));
          return;
        }
        auto job = dispatcher_->Find(request->job_id());
        if (!job.ok()) {
          done(job.status());
          return;
        }
        auto answer = [this, request, job = *job, done] {
          done(GetJobAnswer(job->Snapshot(), *request, dispatcher_->store()));
        };
        // Previews of finished targets show all they wrote: answered once
        // it is stored, without holding this thread meanwhile.
        if (request->preview_bytes() > 0) {
          (*job)->WhenFinalOutputStored(std::move(answer));
        } else {
          answer();
        }
      });
}

grpc::ServerUnaryReactor* JobsService::ListJobs(
    grpc::CallbackServerContext* context,
    const varan::v1::ListJobsRequest* request,
    varan::v1::ListJobsResponse* response) {
  return OperatorBlocking(
      auth_, work_, ROLE_VIEWER, context, response,
      [this,
       request](const Caller&) -> absl::StatusOr<varan::v1::ListJobsResponse> {
        auto page = dispatcher_->List(*request);
        if (page.ok()) BoundListJobs(&*page);
        return page;
      });
}

grpc::ServerWriteReactor<varan::v1::OutputPiece>* JobsService::ReadOutput(
    grpc::CallbackServerContext* context,
    const varan::v1::ReadOutputRequest* request) {
  Caller caller;
  if (grpc::Status s =
          auth_->AuthenticateOperator(*context, ROLE_VIEWER, &caller);
      !s.ok()) {
    return OutputReader::Create(s);
  }
  if (work_ != nullptr) {
    return OutputReader::Create(dispatcher_, dispatcher_->store(), work_,
                                *request);
  }
  auto job = dispatcher_->Find(request->job_id());
  if (!job.ok()) return OutputReader::Create(ToGrpcStatus(job.status()));
  return OutputReader::Create(*std::move(job), dispatcher_,
                              dispatcher_->store(), *request);
}

grpc::ServerUnaryReactor* JobsService::CancelJob(
    grpc::CallbackServerContext* context,
    const varan::v1::CancelJobRequest* request, varan::v1::Job* response) {
  return OperatorBlockingAsync(
      auth_, work_, ROLE_OPERATOR, context, response,
      [this, request](const Caller& caller, auto done) {
        if (std::string to = ForwardTo(request->job_id()); !to.empty()) {
          forward_->Cancel(to, caller.name, *request, std::move(done));
          return;
        }
        auto job = dispatcher_->Cancel(request->job_id(), caller.name);
        if (job.ok()) {
          spdlog::info("audit: {} from {} canceled job {} ({}; {})",
                       caller.name, caller.peer, job->id(),
                       DescribeTarget(job->target()),
                       DescribeCommand(job->spec()));
        }
        done(std::move(job));
      });
}

}  // namespace varan::core

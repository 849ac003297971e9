// CoreClient: the C++ client library for varan-core's operator API (Fleet,
// Jobs and Admin). varanctl is built on it; programs can use it directly.
//
//   auto client = varan::client::CoreClient::Create(
//       {.address = "[::1]:7700", .token = token});
//   if (!client.ok()) ...
//   auto peripheries = (*client)->ListPeripheries({});
//
// Every unary call has a deadline (`timeout`); streaming calls have none
// (a command may run for hours) but end when the job finishes. Errors are
// absl::Status with gRPC's codes. Besides those each method lists, any call
// may fail with UNAVAILABLE (core unreachable; the message names the
// address), DEADLINE_EXCEEDED (no answer within `timeout`),
// UNAUTHENTICATED (missing, wrong, expired or revoked token; the message
// names the address), PERMISSION_DENIED (the token's role is not enough:
// the message names the role needed; or the client's address is not in
// core's --allow list) or RESOURCE_EXHAUSTED (too many failed
// authentications from this address lately).
//
// Thread-safe: one CoreClient may be used from many threads.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/tls.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::client {

struct ClientOptions {
  // Core address: "[::1]:7700", "10.0.0.1:7700", "core.example:7700"; the
  // port defaults to 7700. Several core replicas: comma-separated
  // ("core-a:7700,core-b:7700"); each call goes to the first of them, from
  // the one used last, that connects (see CoreClient).
  std::string address;
  // Operator token, sent as `authorization: Bearer <token>`.
  std::string token;
  // Deadline of unary calls.
  absl::Duration timeout = absl::Seconds(10);
  // TLS toward core (common/tls.h): a CA file (or "system") to verify core,
  // a client certificate and key for mutual TLS, an expected server name.
  // All empty: plaintext.
  ClientTlsFiles tls;
  // With several addresses: how long a core may take to accept a
  // connection before the next one is tried.
  absl::Duration connect_timeout = absl::Seconds(3);
};

// The error FollowJob and ExecAndFollow return (UNAVAILABLE) when core
// ended the stream cleanly before the job finished and they stopped
// following it.
inline constexpr char kStreamEndedEarly[] =
    "the stream from core ended before the job finished";

// How FollowJob and ExecAndFollow keep following a job after its stream
// broke.
struct FollowOptions {
  // How long to keep trying, from the moment the stream first broke.
  absl::Duration patience = absl::Seconds(60);
  // At most this many new watches in all; 0: as many as `patience` allows.
  int max_attempts = 0;
  // The wait before the first new watch; doubled after each, up to
  // `max_backoff`.
  absl::Duration backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(2);
  // Called once, before the first new watch, with the job's id and the
  // sequence number it resumes from (e.g. to tell the user). May be empty.
  std::function<void(const std::string& job_id, uint64_t next_sequence)>
      on_resume;
  // Time and waiting; tests pass a fake clock and a `sleep` that advances
  // it. The clock is not owned and must outlive the call. Empty `sleep`
  // (the default): the client waits on its connections to core
  // (CoreClient::AwaitConnection), ending the wait early once one that
  // was down is up again.
  const Clock* clock = RealClock::Get();
  std::function<void(absl::Duration)> sleep;
};

// The pins of the CAs in the chain the core at `address` presents in a TLS
// handshake that trusts nothing (common/tls.h MakeProbeSecurity), for a
// user to compare with the one core logged before pinning it.
// UNAVAILABLE when no TLS handshake came about (core serves plaintext, or
// is down), FAILED_PRECONDITION when the chain holds no CA.
absl::StatusOr<std::vector<std::string>> ProbeCaPins(const std::string& address,
                                                     absl::Duration timeout);

class CoreClient {
 public:
  // INVALID_ARGUMENT for a malformed address or unusable TLS files (the
  // message names the file). Does not connect yet.
  //
  // Several addresses: a call goes to the core used last while it is
  // connected or connects within connect_timeout, else to the next one that
  // does, which is used from then on; when none does, the call goes to the
  // last one used and fails there (UNAVAILABLE naming it). A call that
  // reached a core is never sent again to another one. A followed job
  // (FollowJob, ExecAndFollow) resumes on whichever core answers.
  static absl::StatusOr<std::unique_ptr<CoreClient>> Create(
      ClientOptions options);

  // The address of the core used last, normalised ("[::1]:7700").
  const std::string& address() const;

  // Fleet.

  // Peripheries matching `target` (all of them when it is empty), sorted by
  // name; removed ones only with `include_removed`. Fetches them a page of
  // `page_size` at a time (0: core's default) until the last. Errors:
  // INVALID_ARGUMENT for a malformed selector; NOT_FOUND for a named
  // periphery that does not exist.
  absl::StatusOr<std::vector<varan::v1::Periphery>> ListPeripheries(
      const varan::v1::Target& target, bool include_removed = false,
      uint32_t page_size = 0);

  // One periphery by name or id. Errors: NOT_FOUND.
  absl::StatusOr<varan::v1::Periphery> GetPeriphery(
      const std::string& name_or_id);

  // Forgets a periphery (its credential stops working, its running targets
  // become LOST) and returns it as it is now, REMOVED. A periphery still
  // running registers again as a new one. Errors: NOT_FOUND.
  absl::StatusOr<varan::v1::Periphery> RemovePeriphery(
      const std::string& name_or_id);

  // Sets and removes an operator's labels on one periphery; they override
  // the labels it reports and survive its re-registration. Returns the
  // periphery with its new labels. Errors: NOT_FOUND; INVALID_ARGUMENT for a
  // bad key or value, or a key both set and removed.
  absl::StatusOr<varan::v1::Periphery> UpdateLabels(
      const varan::v1::UpdateLabelsRequest& request);

  // Jobs.

  // Starts a job and returns at once with its id and matched targets.
  // Errors: INVALID_ARGUMENT for a malformed selector or spec; NOT_FOUND for
  // a named periphery that does not exist; FAILED_PRECONDITION when nothing
  // matches (unless options.allow_no_targets).
  absl::StatusOr<varan::v1::DispatchResponse> Dispatch(
      const varan::v1::DispatchRequest& request);

  using EventCallback = std::function<void(const varan::v1::JobEvent&)>;

  // Dispatches and calls `on_event` for every event (on this thread) until
  // the job finishes. Returns the error that ended the stream, if any: those
  // of Dispatch, or the one that broke the stream (typically UNAVAILABLE;
  // the job runs on, so resume with WatchJob from the next sequence).
  absl::Status Exec(const varan::v1::DispatchRequest& request,
                    const EventCallback& on_event);

  // Streams a job's events from `from_sequence` until it finishes (recorded
  // ones first, then live ones). A watcher that falls behind what core
  // keeps of the output in memory gets one `output_gap` event instead of
  // the output events it missed (its sequence is the last it stands for;
  // the stored part of that output is read with ReadOutput). Errors:
  // NOT_FOUND.
  absl::Status WatchJob(const std::string& job_id, uint64_t from_sequence,
                        const EventCallback& on_event);

  // WatchJob that survives a broken stream: once at least one event has
  // arrived, a stream that breaks (UNAVAILABLE, DEADLINE_EXCEEDED,
  // CANCELLED, INTERNAL or UNKNOWN: core restarting, a dropped connection)
  // or ends before the job's `job_finished` event is watched again from the
  // sequence after the last event delivered, after a growing wait, for as
  // long as `options` allows. `on_event` sees every event once, in order,
  // on this thread (an `output_gap` event too: the watch resumes after its
  // sequence). Output continues where it stopped: bytes a watch after a
  // broken stream repeats are cut off, and what core stored but did not
  // stream again (a core restart loses its live output events) is read
  // back with ReadOutput and delivered, before the event after it, as
  // output events (and output_gap events for what was not stored) with
  // that event's sequence. OK once `job_finished` was delivered. Errors: what
  // ended the last attempt (an error core answered, e.g. NOT_FOUND, at once,
  // without retrying; a stream that never delivered an event is not
  // retried either), or UNAVAILABLE kStreamEndedEarly when the last stream
  // ended cleanly.
  absl::Status FollowJob(const std::string& job_id, uint64_t from_sequence,
                         const EventCallback& on_event,
                         const FollowOptions& options = {});

  // Exec, then, once the job exists (its first event arrived), followed
  // like FollowJob when the stream breaks. Errors: those of Exec before the
  // first event, then those of FollowJob.
  absl::Status ExecAndFollow(const varan::v1::DispatchRequest& request,
                             const EventCallback& on_event,
                             const FollowOptions& options = {});

  // A job with all its targets, each with the size of its output
  // (stdout_info, stderr_info) and, when `preview_bytes` > 0 (at most
  // 65536), previews of it. Core answers at most 1,000 targets at a time:
  // this fetches page after page (GetJobPage) until it has
  // Job.target_count targets; the job's own fields are those of the last
  // page. Errors: NOT_FOUND; INVALID_ARGUMENT for preview_bytes over 65536;
  // INTERNAL when core's pages do not add up to target_count.
  absl::StatusOr<varan::v1::Job> GetJob(const std::string& job_id,
                                        uint32_t preview_bytes = 0);

  // One answer of GetJob: the targets from request.target_offset (in name
  // order), at most 1,000. Errors: those of GetJob.
  absl::StatusOr<varan::v1::Job> GetJobPage(
      const varan::v1::GetJobRequest& request);

  using PieceCallback = std::function<void(const varan::v1::OutputPiece&)>;

  // Streams the stored output of one target's stream (from request.offset)
  // to `on_piece` (on this thread), in pieces of at most 1 MiB; a piece's
  // skipped_bytes says how many bytes before it are not stored. Without
  // request.follow it ends at what is stored now; with it, once the target
  // is final and all its stored output was delivered. No deadline. Errors:
  // NOT_FOUND (job or target); INVALID_ARGUMENT (stream unspecified); what
  // broke the stream (resume from the offset after the last piece).
  absl::Status ReadOutput(const varan::v1::ReadOutputRequest& request,
                          const PieceCallback& on_piece);

  // One page of jobs, newest first, without output, filtered as `request`
  // says; each job lists at most its first 100 targets (target_count says
  // how many it has) and a page may end early at 1 MiB; pass the response's
  // next_page_token (with the same filters) for the next page. Errors:
  // INVALID_ARGUMENT for a bad page token or filter.
  absl::StatusOr<varan::v1::ListJobsResponse> ListJobs(
      const varan::v1::ListJobsRequest& request);

  // Cancels a job: targets not started become CANCELED, running ones are
  // killed and become CANCELED once their periphery confirms, so the
  // returned job may still be RUNNING. Canceling a finished job changes
  // nothing and is not an error. Errors: NOT_FOUND.
  absl::StatusOr<varan::v1::Job> CancelJob(const std::string& job_id);

  // Admin.

  // What the core is: its version, start time, fleet size and heartbeat
  // settings.
  absl::StatusOr<varan::v1::CoreInfo> GetInfo();

  // Tokens (all need the admin role; PERMISSION_DENIED names it otherwise).

  // Creates an operator token; the response's `secret` is the token, shown
  // only here. Errors: INVALID_ARGUMENT (name, role, TTL), ALREADY_EXISTS.
  absl::StatusOr<varan::v1::CreateTokenResponse> CreateToken(
      const varan::v1::CreateTokenRequest& request);
  // Operator tokens without secrets, sorted by name.
  absl::StatusOr<std::vector<varan::v1::Token>> ListTokens(
      bool include_revoked = false);
  // Revokes a token at once. Errors: NOT_FOUND; FAILED_PRECONDITION for a
  // bootstrap token (read from a file core was started with).
  absl::StatusOr<varan::v1::Token> RevokeToken(const std::string& name_or_id);
  // Join tokens, likewise.
  absl::StatusOr<varan::v1::CreateJoinTokenResponse> CreateJoinToken(
      const varan::v1::CreateJoinTokenRequest& request);
  absl::StatusOr<std::vector<varan::v1::JoinToken>> ListJoinTokens(
      bool include_revoked = false);
  absl::StatusOr<varan::v1::JoinToken> RevokeJoinToken(
      const std::string& name_or_id);

  // The built-in cluster CA and its rotation (admin role).
  // FAILED_PRECONDITION when core has no built-in CA, and for a step the
  // rotation is not at.
  absl::StatusOr<varan::v1::ClusterCa> GetClusterCa();
  absl::StatusOr<varan::v1::ClusterCa> RotateClusterCa(
      varan::v1::CaRotationStep step, bool force = false);
  // A client certificate from the cluster CA for this client's operator
  // token (or the one its client certificate stands for), for the key in
  // `csr_pem`; `lifetime` zero: core's default (24 h).
  absl::StatusOr<varan::v1::IssueClientCertificateResponse>
  IssueClientCertificate(const std::string& csr_pem, absl::Duration lifetime);

 private:
  // One core: its address, channel and stubs.
  struct Endpoint {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<varan::v1::Fleet::Stub> fleet;
    std::unique_ptr<varan::v1::Jobs::Stub> jobs;
    std::unique_ptr<varan::v1::Admin::Stub> admin;
  };

  CoreClient(ClientOptions options,
             std::vector<std::unique_ptr<Endpoint>> endpoints);
  // The core for the next call (see Create).
  const Endpoint& Pick() const;
  // Waits `d`, or while no core is connected, up to `d` until one is. Between
  // calls gRPC advances a connection attempt only while a thread waits on its
  // channel (else at its 5-second backup poll, so a TLS reconnect, several
  // round trips, could outlast core's handshake timeout); a resumed watch waits
  // here instead of sleeping.
  void AwaitConnection(absl::Duration d) const;
  void Prepare(grpc::ClientContext* context, bool with_deadline) const;
  // One unary call with the token and the deadline; errors converted.
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Unary(
      std::unique_ptr<Stub> Endpoint::*stub,
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                   Response*),
      const Request& request) const {
    const Endpoint& core = Pick();
    grpc::ClientContext ctx;
    Prepare(&ctx, /*with_deadline=*/true);
    Response response;
    grpc::Status s = ((core.*stub).get()->*method)(&ctx, request, &response);
    if (!s.ok()) return Convert(s, core.address);
    return response;
  }
  absl::Status Convert(const grpc::Status& status,
                       const std::string& address) const;
  // Reads a server stream to its end, each message to `on_message`.
  template <typename Message>
  absl::Status ReadStream(grpc::ClientReaderInterface<Message>* reader,
                          const std::function<void(const Message&)>& on_message,
                          const std::string& address) const {
    Message message;
    while (reader->Read(&message)) on_message(message);
    return Convert(reader->Finish(), address);
  }
  // Where a followed job's stream is, from the events delivered so far.
  struct FollowCursor {
    std::string job_id;
    uint64_t next_sequence = 0;
    bool received = false;
    bool finished = false;
    // Output events may be missing from what core streams: a watch after a
    // broken stream began (Resume), or core replays a stored log (an
    // output_gap without `missed` stands for the output events core does
    // not store as events).
    bool read_back = false;
    // The watch began at sequence 0, so next_offset below is where each
    // stream is; from a later sequence nothing is read back.
    bool offsets_known = true;
    // Per target and stream (StreamIndex: 0 stdout, 1 stderr): the offset after
    // the last byte delivered or reported missed.
    std::map<std::pair<std::string, size_t>, uint64_t> next_offset;
  };
  // Calls `on_event` after noting the event in `cursor`; output is made to
  // continue where the cursor's stream is (client/follow.cc).
  EventCallback Track(FollowCursor* cursor, const EventCallback& on_event);
  // Delivers, as output and output_gap events with `sequence`, the stored
  // output of `target`'s `stream` from the cursor's offset up to `end` (all
  // of it, once the target is final, with kToTheEnd).
  static constexpr uint64_t kToTheEnd = ~uint64_t{0};
  void ReadBack(FollowCursor* cursor, const std::string& target, size_t stream,
                uint64_t end, uint64_t sequence, const EventCallback& on_event);
  // The retry loop of FollowJob after a stream that ended with `status`.
  absl::Status Resume(FollowCursor* cursor, absl::Status status,
                      const EventCallback& on_event,
                      const FollowOptions& options);

  const ClientOptions options_;
  const std::vector<std::unique_ptr<Endpoint>> endpoints_;
  // The index of the core used last.
  mutable std::atomic<size_t> current_{0};
};

}  // namespace varan::client

// CoreClient: the C++ client library for varan-core's operator API (Fleet
// and Jobs). varanctl is built on it; programs can use it directly.
//
//   auto client = varan::client::CoreClient::Create(
//       {.address = "[::1]:7700", .token = token});
//   if (!client.ok()) ...
//   auto peripheries = (*client)->ListPeripheries({});
//
// Every unary call has a deadline (`timeout`); streaming calls have none
// (a command may run for hours) but end when the job finishes. Errors are
// absl::Status with gRPC's codes; UNAVAILABLE messages name the address.
//
// Thread-safe: one CoreClient may be used from many threads.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::client {

struct ClientOptions {
  // Core address: "[::1]:7700", "10.0.0.1:7700", "core.example:7700"; the
  // port defaults to 7700.
  std::string address;
  // Operator token, sent as `authorization: Bearer <token>`.
  std::string token;
  // Deadline of unary calls.
  absl::Duration timeout = absl::Seconds(10);
};

class CoreClient {
 public:
  // INVALID_ARGUMENT for a malformed address. Does not connect yet.
  static absl::StatusOr<std::unique_ptr<CoreClient>> Create(
      ClientOptions options);

  // The address as given, normalised ("[::1]:7700").
  const std::string& address() const { return address_; }

  absl::StatusOr<std::vector<varan::v1::Periphery>> ListPeripheries(
      const varan::v1::Target& target);
  absl::StatusOr<varan::v1::Periphery> GetPeriphery(
      const std::string& name_or_id);

  absl::StatusOr<varan::v1::DispatchResponse> Dispatch(
      const varan::v1::DispatchRequest& request);

  using EventCallback = std::function<void(const varan::v1::JobEvent&)>;

  // Dispatches and calls `on_event` for every event (on this thread) until
  // the job finishes. Returns the error that ended the stream, if any.
  absl::Status Exec(const varan::v1::DispatchRequest& request,
                    const EventCallback& on_event);

  // Streams a job's events from `from_sequence` until it finishes.
  absl::Status WatchJob(const std::string& job_id, uint64_t from_sequence,
                        const EventCallback& on_event);

  absl::StatusOr<varan::v1::Job> GetJob(const std::string& job_id);
  absl::StatusOr<std::vector<varan::v1::Job>> ListJobs(uint32_t limit);

 private:
  CoreClient(ClientOptions options, std::string address,
             std::shared_ptr<grpc::Channel> channel);
  void Prepare(grpc::ClientContext* context, bool with_deadline) const;
  // One unary call with the token and the deadline; errors converted.
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Unary(
      Stub* stub,
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                   Response*),
      const Request& request) const {
    grpc::ClientContext ctx;
    Prepare(&ctx, /*with_deadline=*/true);
    Response response;
    grpc::Status s = (stub->*method)(&ctx, request, &response);
    if (!s.ok()) return Convert(s);
    return response;
  }
  absl::Status Convert(const grpc::Status& status) const;
  absl::Status ReadStream(
      grpc::ClientReaderInterface<varan::v1::JobEvent>* reader,
      const EventCallback& on_event) const;

  const ClientOptions options_;
  const std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<varan::v1::Fleet::Stub> fleet_;
  std::unique_ptr<varan::v1::Jobs::Stub> jobs_;
};

}  // namespace varan::client

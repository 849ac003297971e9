#include "common/grpc_util.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "grpc/grpc_security_constants.h"

namespace varan {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

absl::string_view BearerToken(const grpc::ServerContextBase& context) {
  const auto& md = context.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return {};
  absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kPrefix = "Bearer ";
  if (value.size() <= kPrefix.size() ||
      !absl::StartsWithIgnoreCase(value, kPrefix)) {
    return {};
  }
  return value.substr(kPrefix.size());
}

std::string PeerCertificateChain(const grpc::ServerContextBase& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr) return "";
  std::string chain;
  for (const auto& leaf :
       auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME)) {
    chain.append(leaf.data(), leaf.size());
  }
  if (chain.empty()) return chain;
  // A server sees the rest of the client's chain apart from its leaf (the
  // TLS library's peer chain); a client sees it whole, leaf first.
  for (const auto& rest :
       auth->FindPropertyValues(GRPC_X509_PEM_CERT_CHAIN_PROPERTY_NAME)) {
    absl::string_view more(rest.data(), rest.size());
    if (absl::StartsWith(more, chain)) more.remove_prefix(chain.size());
    chain.append(more.data(), more.size());
  }
  return chain;
}

std::string BearerHeader(absl::string_view token) {
  return absl::StrCat("Bearer ", token);
}

namespace {

constexpr char kRetryAfterPayload[] = "type.varan.dev/varan.retry_after_ms";

// Milliseconds of a hint as sent: at least 1, so a hint is never "now".
int64_t HintMillis(absl::Duration after) {
  return std::max<int64_t>(
      1, absl::ToInt64Milliseconds(absl::Ceil(after, absl::Milliseconds(1))));
}

}  // namespace

absl::Status RetryAfterError(absl::string_view message, absl::Duration after) {
  absl::Status status = absl::ResourceExhaustedError(message);
  status.SetPayload(kRetryAfterPayload,
                    absl::Cord(absl::StrCat(HintMillis(after))));
  return status;
}

std::optional<absl::Duration> RetryAfter(const absl::Status& status) {
  if (!absl::IsResourceExhausted(status)) return std::nullopt;
  auto payload = status.GetPayload(kRetryAfterPayload);
  int64_t ms = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &ms) ||
      ms < 0) {
    return std::nullopt;
  }
  return absl::Milliseconds(ms);
}

void AddRetryAfterTrailer(const absl::Status& status,
                          grpc::ServerContextBase* context) {
  if (auto after = RetryAfter(status)) {
    context->AddTrailingMetadata(kRetryAfterMetadata,
                                 absl::StrCat(HintMillis(*after)));
  }
}

absl::Status WithRetryAfter(absl::Status status,
                            const grpc::ClientContext& context) {
  if (!absl::IsResourceExhausted(status)) return status;
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(kRetryAfterMetadata);
  int64_t ms = 0;
  if (it == trailers.end() ||
      !absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()),
                        &ms) ||
      ms < 0) {
    return status;
  }
  return RetryAfterError(status.message(), absl::Milliseconds(ms));
}

}  // namespace varan

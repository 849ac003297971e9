// HTTP/2 keepalive settings both daemons agree on.
//
// Every Varan server (core and periphery) permits a client's pings as often
// as every kPermittedPingInterval, with or without calls in progress, and
// every keepalive time a daemon accepts (its --keepalive-time flag, at least
// kMinKeepaliveTime) is twice that or more: so an idle connection or tunnel
// never gets a `too_many_pings` GOAWAY, whatever the two sides configured. Each
// side also pings its peer after `time` without traffic and drops the
// connection when the answer takes longer than `timeout`, so a dead peer
// (pulled cable, frozen host) is noticed within time + timeout.
#pragma once

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/support/channel_arguments.h"

namespace varan {

inline constexpr absl::Duration kMinKeepaliveTime = absl::Seconds(1);
inline constexpr absl::Duration kPermittedPingInterval =
    absl::Milliseconds(500);

struct Keepalive {
  absl::Duration time = absl::Seconds(30);
  absl::Duration timeout = absl::Seconds(10);
};

// How long one connection attempt (TCP and HTTP/2 handshake) may take
// before it is given up. gRPC reads this from GRPC_ARG_MIN_RECONNECT_BACKOFF_MS
// (its "minimum connect timeout"), not the backoff: set to the 200 ms backoff
// it made every handshake slower than 200 ms fail, so 10,000 peripheries
// registering at once retried thousands of times and a core dialing 10,000
// peripheries failed targets (bench/fleet_sim). A refused connection still
// fails at once; only a slow or silent peer waits this long.
inline constexpr absl::Duration kConnectTimeout = absl::Seconds(5);

// Channel arguments of a client to another Varan daemon: keepalive, and
// reconnect backoff from `min_backoff` up to `max_backoff` (gRPC's own
// default grows to two minutes, far too slow to notice a restarted peer),
// each connection attempt given at least kConnectTimeout.
inline void SetClientChannelArgs(grpc::ChannelArguments* args,
                                 const Keepalive& k, absl::Duration min_backoff,
                                 absl::Duration max_backoff) {
  args->SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
               static_cast<int>(absl::ToInt64Milliseconds(k.time)));
  args->SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
               static_cast<int>(absl::ToInt64Milliseconds(k.timeout)));
  args->SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args->SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args->SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
               static_cast<int>(absl::ToInt64Milliseconds(min_backoff)));
  args->SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
               static_cast<int>(absl::ToInt64Milliseconds(
                   std::max(min_backoff, kConnectTimeout))));
  args->SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
               static_cast<int>(absl::ToInt64Milliseconds(max_backoff)));
}

// Integer server arguments (for StartServer): the ping policy above, and
// pings to clients after `k.time` of silence.
inline std::vector<std::pair<std::string, int>> ServerKeepaliveArgs(
    const Keepalive& k) {
  return {
      {GRPC_ARG_KEEPALIVE_TIME_MS,
       static_cast<int>(absl::ToInt64Milliseconds(k.time))},
      {GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
       static_cast<int>(absl::ToInt64Milliseconds(k.timeout))},
      {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1},
      {GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0},
      {GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
       static_cast<int>(absl::ToInt64Milliseconds(kPermittedPingInterval))},
  };
}

}  // namespace varan

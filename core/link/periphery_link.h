// PeripheryLink: how core reaches one periphery, whichever direction the
// connection goes. The dispatcher only ever holds this interface.
//
// Thread-safety: implementations are thread-safe.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "varan/v1/periphery.pb.h"

namespace varan::core {

// Marks a call's status as "the request never reached the periphery" (no
// tunnel open, no connection could be made): the target can fail at once.
// Any other broken call may have started the command (the periphery then
// holds its result), so the dispatcher waits for the periphery's report.
inline absl::Status NotDelivered(absl::Status status) {
  status.SetPayload("type.varan.dev/varan.not_delivered", absl::Cord("1"));
  return status;
}
inline bool IsNotDelivered(const absl::Status& status) {
  return status.GetPayload("type.varan.dev/varan.not_delivered").has_value();
}

// Marks a NotDelivered status as "sent by a stale route": with several
// replicas, the request went to (or was meant for) a replica that does not
// hold the periphery's connection any more, or could not be reached — one
// that died, before the others' views showed the periphery on a survivor.
// It may be sent again once the periphery is held elsewhere (the Dispatcher
// does, for a while) instead of failing its target.
inline absl::Status Misrouted(absl::Status status) {
  status = NotDelivered(std::move(status));
  status.SetPayload("type.varan.dev/varan.misrouted", absl::Cord("1"));
  return status;
}
inline bool IsMisrouted(const absl::Status& status) {
  return status.GetPayload("type.varan.dev/varan.misrouted").has_value();
}

// Receives one Execute call's events. OnEvent may run on any thread but
// never concurrently for one call; OnDone runs exactly once, last.
class ExecuteObserver {
 public:
  virtual ~ExecuteObserver() = default;
  virtual void OnEvent(const varan::v1::ExecuteEvent& event) = 0;
  virtual void OnDone(const absl::Status& status) = 0;
};

// Handle to an Execute call in flight. Valid until the observer's OnDone
// has returned.
class ExecuteCall {
 public:
  virtual ~ExecuteCall() = default;
  // Asks the periphery to stop the command (Agent.Cancel); the call then
  // reports how it ended. If the periphery cannot be asked, the call is
  // aborted instead.
  virtual void Cancel() = 0;
  // Drops the call at once (the periphery stops the command unless it was
  // asked to survive its caller). OnDone follows with CANCELLED.
  virtual void Abort() = 0;
};

class PeripheryLink {
 public:
  virtual ~PeripheryLink() = default;
  // Starts `request`. `observer` must stay valid until its OnDone.
  virtual ExecuteCall* Execute(const varan::v1::ExecuteRequest& request,
                               ExecuteObserver* observer) = 0;
};

// Gives the link for a periphery (id, address, credential).
class LinkProvider {
 public:
  virtual ~LinkProvider() = default;
  virtual std::shared_ptr<PeripheryLink> LinkFor(
      const std::string& id, const std::string& address,
      const std::string& credential) = 0;
};

}  // namespace varan::core

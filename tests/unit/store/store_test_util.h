// Records the store tests write: jobs with time-ordered ids, events,
// peripheries. Shared by the contract suite (store_contract_test.cc) and the
// SQLite-specific tests. Tests only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/time_util.h"
#include "core/store/store.h"

namespace varan::core::store_test {

constexpr varan::v1::JobState kRunning = varan::v1::JOB_STATE_RUNNING;
constexpr varan::v1::JobState kSucceeded = varan::v1::JOB_STATE_SUCCEEDED;
constexpr varan::v1::JobState kFailed = varan::v1::JOB_STATE_FAILED;
constexpr varan::v1::JobState kCanceled = varan::v1::JOB_STATE_CANCELED;

inline const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

// A time-ordered id like the dispatcher's: hex millis, counter, random.
inline std::string JobId(int n) {
  return absl::StrFormat("%011x%03x%s", absl::ToUnixMillis(kT0) + n, n & 0xfff,
                         "c0ffee");
}

inline varan::v1::Job MakeJob(const std::string& id, varan::v1::JobState state,
                              absl::Time created,
                              const std::string& created_by = "admin",
                              const std::vector<std::string>& targets = {
                                  "p1"}) {
  varan::v1::Job job;
  job.set_id(id);
  job.set_created_by(created_by);
  job.set_state(state);
  job.mutable_spec()->add_argv("/bin/true");
  SetTimestamp(created, job.mutable_create_time());
  for (const std::string& name : targets) {
    varan::v1::JobTarget* t = job.add_targets();
    t->set_name(name);
    t->set_periphery_id("id-" + name);
    t->set_state(varan::v1::TARGET_STATE_QUEUED);
  }
  return job;
}

inline varan::v1::JobEvent MakeEvent(const std::string& job_id, uint64_t seq) {
  varan::v1::JobEvent e;
  e.set_job_id(job_id);
  e.set_sequence(seq);
  SetTimestamp(kT0 + absl::Seconds(static_cast<int64_t>(seq)),
               e.mutable_time());
  e.set_target("p1");
  e.mutable_output()->set_data(absl::StrFormat("chunk %d\n", seq));
  return e;
}

inline std::vector<std::string> Ids(const std::vector<varan::v1::Job>& jobs) {
  std::vector<std::string> ids;
  for (const varan::v1::Job& j : jobs) ids.push_back(j.id());
  return ids;
}

inline StoredPeriphery MakePeriphery(const std::string& id,
                                     const std::string& name,
                                     varan::v1::PeripheryState state) {
  StoredPeriphery p;
  p.info.set_id(id);
  p.info.set_name(name);
  p.info.set_state(state);
  p.info.set_address("[fd00::5]:7701");
  (*p.info.mutable_labels())["env"] = "prod";
  (*p.info.mutable_reported_labels())["env"] = "dev";
  SetTimestamp(kT0, p.info.mutable_first_seen());
  p.credential = "secret-" + id;
  return p;
}

}  // namespace varan::core::store_test

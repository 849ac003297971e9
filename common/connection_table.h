// Bookkeeping for a listener that hands accepted connections to gRPC: how
// many connections each client address holds (for the per-address cap), and
// a log throttle for the listener's refusals.
//
// gRPC does not say when a connection it was handed closes. The table
// remembers each handed-over descriptor with the identity of its socket
// (the inode fstat reports) and asks an `Alive` function whether the
// descriptor still refers to that socket: once gRPC closes it, the number
// is free or belongs to something else, and the entry is dropped. Entries
// are checked for one address when it reaches the cap, and all of them when
// Reap() is called (the listener does so every 30 s).
//
// Not thread-safe: owned and used by one listener thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "absl/time/time.h"

namespace varan {

class ConnectionTable {
 public:
  // True when descriptor `fd` still refers to the socket with inode `inode`.
  using Alive = std::function<bool(int fd, uint64_t inode)>;

  // `cap`: connections one address may hold; 0: no cap.
  ConnectionTable(uint32_t cap, Alive alive);

  // True when `address` may open one more connection. At the cap, that
  // address's entries are checked first, so connections that ended count
  // no longer.
  bool Admit(const std::string& address);
  // Records a connection from `address` on `fd`. An entry left for the same
  // descriptor number belongs to a connection that has ended (the kernel
  // gave the number out again) and is dropped.
  void Add(const std::string& address, int fd, uint64_t inode);
  // Drops every entry whose descriptor no longer refers to its socket;
  // returns how many.
  size_t Reap();

  // Connections recorded for `address` (as of the last check).
  size_t Count(const std::string& address) const;
  // Connections recorded in all.
  size_t size() const { return by_fd_.size(); }
  uint32_t cap() const { return cap_; }

 private:
  struct Entry {
    uint64_t inode;
    std::string address;
  };
  void Erase(int fd);
  // Checks the entries of `address`; drops those that ended.
  void ReapAddress(const std::string& address);

  const uint32_t cap_;
  const Alive alive_;
  std::unordered_map<int, Entry> by_fd_;
  std::unordered_map<std::string, std::unordered_set<int>> by_address_;
};

// The production Alive: fstat(fd) succeeds, is a socket, and has `inode`.
bool DescriptorIsSocket(int fd, uint64_t inode);

// Lets one log line through per `period`, counting the events in between,
// so that a flood of refusals costs a line every few seconds.
class LogThrottle {
 public:
  explicit LogThrottle(absl::Duration period) : period_(period) {}
  // Records `n` events at `now`. True when a line should be written; then
  // `*events` is the number of events that line stands for (these and
  // those suppressed since the previous line).
  bool Record(absl::Time now, uint64_t n, uint64_t* events);

 private:
  const absl::Duration period_;
  absl::Time last_ = absl::InfinitePast();
  uint64_t pending_ = 0;
};

}  // namespace varan

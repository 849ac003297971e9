#include "common/connection_table.h"

#include <sys/stat.h>

#include <utility>
#include <vector>

namespace varan {

ConnectionTable::ConnectionTable(uint32_t cap, Alive alive)
    : cap_(cap), alive_(std::move(alive)) {}

bool ConnectionTable::Admit(const std::string& address) {
  if (cap_ == 0 || Count(address) < cap_) return true;
  ReapAddress(address);
  return Count(address) < cap_;
}

void ConnectionTable::Add(const std::string& address, int fd, uint64_t inode) {
  Erase(fd);
  by_fd_[fd] = Entry{inode, address};
  by_address_[address].insert(fd);
}

size_t ConnectionTable::Reap() {
  std::vector<int> ended;
  for (const auto& [fd, entry] : by_fd_) {
    if (!alive_(fd, entry.inode)) ended.push_back(fd);
  }
  for (int fd : ended) Erase(fd);
  return ended.size();
}

size_t ConnectionTable::Count(const std::string& address) const {
  auto it = by_address_.find(address);
  return it == by_address_.end() ? 0 : it->second.size();
}

void ConnectionTable::Erase(int fd) {
  auto it = by_fd_.find(fd);
  if (it == by_fd_.end()) return;
  auto addr = by_address_.find(it->second.address);
  if (addr != by_address_.end()) {
    addr->second.erase(fd);
    if (addr->second.empty()) by_address_.erase(addr);
  }
  by_fd_.erase(it);
}

void ConnectionTable::ReapAddress(const std::string& address) {
  auto it = by_address_.find(address);
  if (it == by_address_.end()) return;
  std::vector<int> ended;
  for (int fd : it->second) {
    if (!alive_(fd, by_fd_.at(fd).inode)) ended.push_back(fd);
  }
  for (int fd : ended) Erase(fd);
}

bool DescriptorIsSocket(int fd, uint64_t inode) {
  struct stat st {};
  return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
         static_cast<uint64_t>(st.st_ino) == inode;
}

bool LogThrottle::Record(absl::Time now, uint64_t n, uint64_t* events) {
  pending_ += n;
  if (now - last_ < period_) return false;
  last_ = now;
  *events = pending_;
  pending_ = 0;
  return true;
}

}  // namespace varan

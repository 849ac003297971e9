#include "periphery/host/facts.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "varan/version.h"

namespace varan::periphery {
namespace {

// Value of KEY=VALUE in an os-release style file, unquoted.
std::string OsReleaseValue(const std::string& path, absl::string_view key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view l(line);
    if (!absl::ConsumePrefix(&l, key) || !absl::ConsumePrefix(&l, "=")) {
      continue;
    }
    if (l.size() >= 2 && (l.front() == '"' || l.front() == '\'') &&
        l.back() == l.front()) {
      l = l.substr(1, l.size() - 2);
    }
    return std::string(l);
  }
  return "";
}

// A "Key:  value kB" style line's number from a /proc file.
uint64_t ProcValue(const std::string& path, absl::string_view key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view l(line);
    if (!absl::ConsumePrefix(&l, key)) continue;
    // "Key:  123 kB" (/proc/meminfo) or "key 123" (/proc/stat).
    l = absl::StripLeadingAsciiWhitespace(l);
    absl::ConsumePrefix(&l, ":");
    l = absl::StripAsciiWhitespace(l);
    absl::string_view num = l.substr(0, l.find(' '));
    uint64_t v = 0;
    if (!absl::SimpleAtoi(num, &v)) return 0;
    if (absl::EndsWith(l, "kB")) v *= 1024;
    return v;
  }
  return 0;
}

// /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() &&
        absl::ascii_isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 +
                                      (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

varan::v1::HostFacts CollectFacts() {
  varan::v1::HostFacts facts;
  utsname u{};
  if (uname(&u) == 0) {
    facts.set_hostname(u.nodename);
    facts.set_kernel(u.release);
    facts.set_arch(u.machine);
  }
  std::string os = OsReleaseValue("/etc/os-release", "PRETTY_NAME");
  if (os.empty()) os = OsReleaseValue("/usr/lib/os-release", "PRETTY_NAME");
  facts.set_os(os);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  facts.set_cpu_count(cpus > 0 ? static_cast<uint32_t>(cpus) : 0);
  struct sysinfo si {};
  if (sysinfo(&si) == 0) {
    facts.set_memory_total_bytes(static_cast<uint64_t>(si.totalram) *
                                 si.mem_unit);
  }
  {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (absl::StartsWith(line, "model name")) {
        size_t colon = line.find(':');
        if (colon != std::string::npos) {
          facts.set_cpu_model(
              std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
        }
        break;
      }
    }
  }
  uint64_t btime = ProcValue("/proc/stat", "btime");
  if (btime > 0)
    facts.mutable_boot_time()->set_seconds(static_cast<int64_t>(btime));

  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) == 0) {
    for (ifaddrs* i = ifs; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr || (i->ifa_flags & IFF_LOOPBACK)) continue;
      char buf[INET6_ADDRSTRLEN] = {};
      uint32_t prefix = 0;
      if (i->ifa_addr->sa_family == AF_INET) {
        auto* sin = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
        inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
        if (i->ifa_netmask != nullptr) {
          auto* m = reinterpret_cast<sockaddr_in*>(i->ifa_netmask);
          prefix = static_cast<uint32_t>(
              __builtin_popcount(ntohl(m->sin_addr.s_addr)));
        }
      } else if (i->ifa_addr->sa_family == AF_INET6) {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
        inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
        if (i->ifa_netmask != nullptr) {
          auto* m = reinterpret_cast<sockaddr_in6*>(i->ifa_netmask);
          for (unsigned char byte : m->sin6_addr.s6_addr) {
            prefix += static_cast<uint32_t>(__builtin_popcount(byte));
          }
        }
      } else {
        continue;
      }
      auto* a = facts.add_addresses();
      a->set_interface(i->ifa_name);
      a->set_address(buf);
      a->set_prefix_length(prefix);
    }
    freeifaddrs(ifs);
  }
  for (auto& fs : ListFilesystems()) *facts.add_filesystems() = std::move(fs);
  facts.set_agent_version(kVersion);
  return facts;
}

std::vector<varan::v1::Filesystem> ListFilesystems() {
  // Network and pool filesystems that are real storage without a /dev node.
  static const std::set<std::string> kDeviceless = {"zfs",  "nfs",  "nfs4",
                                                    "cifs", "smb3", "9p"};
  std::map<std::string, varan::v1::Filesystem> by_mount;
  std::ifstream in("/proc/self/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 3) continue;
    const std::string& device = f[0];
    const std::string mount = UnescapeMountField(f[1]);
    const std::string& type = f[2];
    const bool block = absl::StartsWith(device, "/dev/") && type != "squashfs";
    const bool root_overlay = type == "overlay" && mount == "/";
    if (!block && !root_overlay && !kDeviceless.contains(type)) continue;
    struct statvfs st {};
    if (statvfs(mount.c_str(), &st) != 0 || st.f_blocks == 0) continue;
    varan::v1::Filesystem fs;
    fs.set_mount_point(mount);
    fs.set_device(UnescapeMountField(device));
    fs.set_type(type);
    fs.set_size_bytes(static_cast<uint64_t>(st.f_blocks) * st.f_frsize);
    by_mount[mount] = std::move(fs);  // the last mount on a point wins
  }
  std::vector<varan::v1::Filesystem> out;
  for (auto& [mount, fs] : by_mount) out.push_back(std::move(fs));
  return out;
}

varan::v1::HostStats StatsCollector::Collect() {
  varan::v1::HostStats stats;
  // /proc/stat "cpu  user nice system idle iowait irq softirq steal ...".
  {
    std::ifstream in("/proc/stat");
    std::string line;
    if (std::getline(in, line) && absl::StartsWith(line, "cpu ")) {
      std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      uint64_t total = 0, idle = 0;
      for (size_t i = 1; i < f.size() && i <= 8; ++i) {
        uint64_t v = 0;
        if (!absl::SimpleAtoi(f[i], &v)) continue;
        total += v;
        if (i == 4 || i == 5) idle += v;  // idle, iowait
      }
      const uint64_t busy = total - idle;
      absl::MutexLock lock(&mu_);
      if (total > prev_total_) {
        stats.set_cpu_percent(100.0 * static_cast<double>(busy - prev_busy_) /
                              static_cast<double>(total - prev_total_));
      }
      prev_busy_ = busy;
      prev_total_ = total;
    }
  }
  for (const auto& fs : ListFilesystems()) {
    struct statvfs st {};
    if (statvfs(fs.mount_point().c_str(), &st) != 0) continue;
    auto* d = stats.add_disks();
    d->set_mount_point(fs.mount_point());
    const uint64_t frsize = st.f_frsize;
    d->set_size_bytes(static_cast<uint64_t>(st.f_blocks) * frsize);
    d->set_used_bytes(static_cast<uint64_t>(st.f_blocks - st.f_bfree) * frsize);
    d->set_available_bytes(static_cast<uint64_t>(st.f_bavail) * frsize);
  }
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) == 3) {
    stats.set_load1(load[0]);
    stats.set_load5(load[1]);
    stats.set_load15(load[2]);
  }
  struct sysinfo si {};
  if (sysinfo(&si) == 0) {
    stats.set_memory_total_bytes(static_cast<uint64_t>(si.totalram) *
                                 si.mem_unit);
    stats.set_uptime_seconds(static_cast<uint64_t>(si.uptime));
  }
  stats.set_memory_available_bytes(ProcValue("/proc/meminfo", "MemAvailable"));
  return stats;
}

varan::v1::HostStats HostSnapshot::Sample() {
  varan::v1::HostStats stats = collector_.Collect();
  absl::MutexLock lock(&mu_);
  latest_ = stats;
  return stats;
}

varan::v1::HostStats HostSnapshot::Latest() const {
  absl::MutexLock lock(&mu_);
  return latest_;
}

}  // namespace varan::periphery

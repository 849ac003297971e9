#include "periphery/host/facts.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
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
    l = absl::StripLeadingAsciiWhitespace(l);
    if (!absl::ConsumePrefix(&l, ":")) {
      // /proc/stat style "btime 12345".
    }
    l = absl::StripAsciiWhitespace(l);
    absl::string_view num = l.substr(0, l.find(' '));
    uint64_t v = 0;
    if (!absl::SimpleAtoi(num, &v)) return 0;
    if (absl::EndsWith(l, "kB")) v *= 1024;
    return v;
  }
  return 0;
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
  facts.set_agent_version(kVersion);
  return facts;
}

varan::v1::HostStats CollectStats() {
  varan::v1::HostStats stats;
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

}  // namespace varan::periphery

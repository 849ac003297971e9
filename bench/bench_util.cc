#include "bench/bench_util.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "tests/integration/daemons.h"

extern char** environ;

namespace varan::bench {

using varan::testing::ReadFile;

void PrintLatencyRow(const char* name, const std::vector<double>& v) {
  std::printf("| %s | %.0f us | %.0f us | %.0f us | %.0f us | %.0f us |\n",
              name, Percentile(v, 0.5), Percentile(v, 0.9), Percentile(v, 0.99),
              *std::min_element(v.begin(), v.end()),
              *std::max_element(v.begin(), v.end()));
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string LoadAverage() {
  // "0.52 0.58 0.59 1/123 4567": the first three fields.
  std::istringstream in(ReadFile("/proc/loadavg"));
  std::string a, b, c;
  in >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

double CpuSecondsOf(const std::string& stat_path, std::string* name) {
  std::string stat = ReadFile(stat_path);
  size_t open = stat.find('(');
  size_t paren = stat.rfind(')');
  if (open == std::string::npos || paren == std::string::npos) return 0;
  if (name != nullptr) *name = stat.substr(open + 1, paren - open - 1);
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // Field 3 (state) comes first; utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

double CpuSeconds(const std::string& pid) {
  return CpuSecondsOf(absl::StrCat("/proc/", pid, "/stat"));
}

double StatusMb(const std::string& pid, const std::string& key) {
  std::string status = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  size_t at = status.find(key + ":");
  if (at == std::string::npos) return 0;
  return std::stod(status.substr(at + key.size() + 1)) / 1024.0;
}

double MachineBusySeconds() {
  std::istringstream in(ReadFile("/proc/stat"));
  std::string cpu;
  in >> cpu;
  // user nice system idle iowait irq softirq steal
  std::vector<double> v;
  for (double x; v.size() < 8 && in >> x;) v.push_back(x);
  if (cpu != "cpu" || v.size() < 5) return 0;
  double busy = 0;
  for (double x : v) busy += x;
  busy -= v[3] + v[4];
  return busy / static_cast<double>(sysconf(_SC_CLK_TCK));
}

bool BareSpawn() {
  char arg0[] = "/bin/true";
  char* argv[] = {arg0, nullptr};
  pid_t pid;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv, environ) != 0) {
    return false;
  }
  int status = 0;
  return waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
         WEXITSTATUS(status) == 0;
}

absl::StatusOr<std::unique_ptr<client::CoreClient>> AdminClient(
    testing::TestFleet& fleet, absl::Duration timeout) {
  return client::CoreClient::Create(
      {fleet.core_address(),
       Trimmed(ReadFile(fleet.admin_token_file())),
       timeout,
       {}});
}

bool ParseFlags(int argc, char** argv, const char* program,
                const FlagSetters& setters) {
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    auto setter = setters.find(flag);
    if (setter == setters.end()) {
      std::fprintf(stderr, "%s: unknown flag %s\n", program, flag.c_str());
      return false;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: %s needs a value\n", program, flag.c_str());
      return false;
    }
    try {
      setter->second(argv[i + 1]);
    } catch (const std::exception&) {
      std::fprintf(stderr, "%s: bad value for %s: %s\n", program, flag.c_str(),
                   argv[i + 1]);
      return false;
    }
  }
  return true;
}

}  // namespace varan::bench

// What the benchmarks share: percentiles of samples, and a process's CPU
// time, memory and the machine's load read from /proc; their `--flag value`
// command lines.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace varan::client {
class CoreClient;
}
namespace varan::testing {
class TestFleet;
}

namespace varan::bench {

// The p-quantile (0..1) of `v`, nearest rank; `v` must not be empty.
double Percentile(std::vector<double> v, double p);

// Prints one Markdown row "| name | p50 | p90 | p99 | min | max |" of
// latencies in microseconds (`v` not empty).
void PrintLatencyRow(const char* name, const std::vector<double>& v);

// `s` without trailing newlines and spaces.
std::string Trimmed(std::string s);

// The 1, 5 and 15 minute load averages, "0.52 0.58 0.59".
std::string LoadAverage();

// utime + stime from a /proc/.../stat file, in seconds; 0 if unreadable.
// `*name` (if not null) gets the command name.
double CpuSecondsOf(const std::string& stat_path, std::string* name = nullptr);

// CPU seconds of process `pid` ("self" for this one).
double CpuSeconds(const std::string& pid);

// A line of /proc/PID/status in MB, e.g. StatusMb(pid, "VmRSS"); 0 if
// missing.
double StatusMb(const std::string& pid, const std::string& key);

// Busy CPU seconds of the whole machine so far (every process, all CPUs:
// /proc/stat's total less idle and iowait); 0 if unreadable.
double MachineBusySeconds();

// Spawns and reaps /bin/true with posix_spawn; false if it could not run or
// failed.
bool BareSpawn();

// A client of `fleet`'s core with its admin token, whose unary calls get
// `timeout` (a Dispatch may queue behind the store's writing of a large
// output).
absl::StatusOr<std::unique_ptr<client::CoreClient>> AdminClient(
    testing::TestFleet& fleet, absl::Duration timeout);

// What to do with each flag's value (e.g. std::stoi it into an option).
using FlagSetters =
    std::map<std::string, std::function<void(const std::string&)>>;

// Parses argv[1..] as `--flag value` pairs with `setters`. On an unknown
// flag, a flag without a value or a value its setter throws on (stoi of
// "x"), prints "PROGRAM: ..." to stderr and returns false.
bool ParseFlags(int argc, char** argv, const char* program,
                const FlagSetters& setters);

}  // namespace varan::bench

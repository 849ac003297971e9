// Benchmark of stored output (Store::AppendOutput, core/store/store.h): one
// job's stdout appended in pieces the size core writes (256 KiB) with the
// default retention (first 1 MiB + last 3 MiB), to a MemoryStore and to a
// SqliteStore on disk (a fresh directory under --dir), with a window of
// appends in flight (core waits for a stream's commit before it writes the
// next piece; the window stands for several streams). Reports MB/s from the
// first append to the last commit, the process's CPU seconds per GiB, and
// for SQLite the database and WAL sizes after the run; checks that the
// stored head and tail read back byte-exact.
//
// Usage (defaults in brackets):
//   store_bench [--backend all|memory|sqlite] [all]  [--mib N] [1024]
//               [--piece-kib N] [256]  [--window N] [4]  [--dir DIR] [/tmp]
// Built with the other benchmarks; not run by bench/run.sh (yet).
#include <stdlib.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/store/memory_store.h"
#include "core/store/sqlite_store.h"
#include "varan/v1/core.pb.h"

namespace {

using varan::core::OutputKey;
using varan::core::OutputRetention;
using varan::core::Store;

struct Options {
  std::string backend = "all";
  uint64_t mib = 1024;
  uint64_t piece_kib = 256;
  int window = 4;
  std::string dir = "/tmp";
};

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

uint64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

// Piece n of the stream: the same random block with n in its first bytes,
// so the head and the tail can be checked.
std::string Piece(const std::string& block, uint64_t n) {
  std::string p = block;
  const std::string tag = absl::StrCat("piece ", n, "|");
  p.replace(0, tag.size(), tag);
  return p;
}

struct Result {
  double seconds = 0;
  double cpu = 0;
  bool ok = false;
};

// Appends `opt.mib` MiB to `store` and waits for the last commit.
Result Run(Store& store, const Options& opt, const std::string& block) {
  const std::string id = "000000000000bench";
  varan::v1::Job job;
  job.set_id(id);
  job.set_state(varan::v1::JOB_STATE_RUNNING);
  job.add_targets()->set_name("p1");
  store.CreateJob(job, nullptr);
  if (!store.Sync().ok()) return {};
  const OutputKey key{id, "p1", varan::v1::OUTPUT_STREAM_STDOUT};
  const OutputRetention retention{1 << 20, 3 << 20};
  const uint64_t piece = block.size();
  const uint64_t pieces = (opt.mib << 20) / piece;

  absl::Mutex mu;
  int in_flight = 0;
  bool failed = false;
  Result r;
  const double cpu0 = CpuSeconds();
  const absl::Time t0 = absl::Now();
  for (uint64_t n = 0; n < pieces; ++n) {
    const std::string data = Piece(block, n);
    {
      absl::MutexLock lock(&mu);
      const auto room = [&] { return in_flight < opt.window; };
      mu.Await(absl::Condition(&room));
      ++in_flight;
    }
    store.AppendOutput(key, n * piece, data, retention,
                       [&](const absl::Status& s) {
                         absl::MutexLock lock(&mu);
                         --in_flight;
                         if (!s.ok()) failed = true;
                       });
  }
  if (!store.Sync().ok()) return {};
  r.seconds = absl::ToDoubleSeconds(absl::Now() - t0);
  r.cpu = CpuSeconds() - cpu0;

  // The head and the tail read back.
  auto out = store.ReadOutput(key, 0, 8 << 20);
  const uint64_t end = pieces * piece;
  std::string head;
  std::string tail;
  for (uint64_t n = 0; n * piece < (1 << 20); ++n) head += Piece(block, n);
  for (uint64_t n = (end - (3 << 20)) / piece; n < pieces; ++n) {
    tail += Piece(block, n);
  }
  r.ok = !failed && out.ok() && out->extent.end == end &&
         out->extent.stored == (4 << 20) && out->pieces.size() == 2 &&
         out->pieces[0].data == head.substr(0, 1 << 20) &&
         out->pieces[1].offset == end - (3 << 20) &&
         out->pieces[1].data == tail.substr(tail.size() - (3 << 20));
  return r;
}

void Print(const char* name, const Options& opt, const Result& r,
           const std::string& sizes) {
  const double mb = static_cast<double>(opt.mib << 20) / 1e6;
  std::printf(
      "| %s | %llu MiB in %llu KiB | %d | %.2f | %.0f | %.2f | %s | %s |\n",
      name, static_cast<unsigned long long>(opt.mib),
      static_cast<unsigned long long>(opt.piece_kib), opt.window, r.seconds,
      mb / r.seconds, r.cpu / (static_cast<double>(opt.mib) / 1024),
      sizes.c_str(), r.ok ? "yes" : "NO");
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "store_bench: %s needs a value\n", flag.c_str());
      return 2;
    }
    const std::string value = argv[++i];
    if (flag == "--backend") {
      opt.backend = value;
    } else if (flag == "--mib") {
      opt.mib = std::stoull(value);
    } else if (flag == "--piece-kib") {
      opt.piece_kib = std::stoull(value);
    } else if (flag == "--window") {
      opt.window = std::stoi(value);
    } else if (flag == "--dir") {
      opt.dir = value;
    } else {
      std::fprintf(stderr, "store_bench: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if ((opt.backend != "all" && opt.backend != "memory" &&
       opt.backend != "sqlite") ||
      opt.piece_kib < 1 || opt.window < 1 || (opt.mib << 20) < (8 << 20)) {
    std::fprintf(stderr,
                 "store_bench: --backend all|memory|sqlite, --mib >= 8, "
                 "positive --piece-kib and --window\n");
    return 2;
  }
  std::string block(opt.piece_kib << 10, '\0');
  std::mt19937_64 rng(42);
  for (char& c : block) c = static_cast<char>(rng());

  std::printf(
      "Stored output: AppendOutput, retention 1 MiB + 3 MiB (load %s)\n\n",
      LoadAverage().c_str());
  std::printf(
      "| store | appended | in flight | s | MB/s | CPU s/GiB | on disk after | "
      "head+tail exact |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  bool all_ok = true;
  if (opt.backend == "all" || opt.backend == "memory") {
    varan::core::MemoryStore store;
    const Result r = Run(store, opt, block);
    Print("memory", opt, r, "-");
    all_ok &= r.ok;
  }
  if (opt.backend == "all" || opt.backend == "sqlite") {
    std::string tmpl = opt.dir + "/varan-store-bench-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::perror("store_bench: mkdtemp");
      return 1;
    }
    const std::string path = tmpl + "/core.db";
    Result r;
    std::string sizes;
    {
      auto store = varan::core::SqliteStore::Open(path, {});
      if (!store.ok()) {
        std::fprintf(stderr, "store_bench: %s\n",
                     store.status().ToString().c_str());
        return 1;
      }
      r = Run(**store, opt, block);
      sizes = absl::StrCat(FileSize(path) >> 20, " MiB + WAL ",
                           FileSize(path + "-wal") >> 20, " MiB");
    }
    absl::StrAppend(&sizes, "; closed: ", FileSize(path) >> 20, " MiB");
    Print("sqlite", opt, r, sizes);
    all_ok &= r.ok;
    std::error_code ec;
    std::filesystem::remove_all(tmpl, ec);
  }
  std::printf(
      "\nThe machine may be shared with other work: compare figures of "
      "one run only.\n");
  return all_ok ? 0 : 1;
}

#include "periphery/exec/execution.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "common/command_spec.h"
#include "common/log.h"
#include "common/time_util.h"

extern char** environ;

namespace varan::periphery {
namespace {

using varan::v1::CommandSpec;
using varan::v1::ExecuteEvent;
using varan::v1::ExitStatus;
using varan::v1::OutputStream;

// Milliseconds until `deadline` for poll(), clamped to [0, 1 hour].
int PollTimeout(absl::Time now, absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return -1;
  int64_t ms = absl::ToInt64Milliseconds(deadline - now) + 1;
  if (ms < 0) return 0;
  return static_cast<int>(std::min<int64_t>(ms, 3600 * 1000));
}

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// One output pipe being read.
struct OutputPipe {
  int fd = -1;
  OutputStream stream;
  uint64_t sequence = 0;
  uint64_t delivered = 0;
  uint64_t dropped = 0;
};

}  // namespace

Execution::Execution(const CommandSpec& spec, const ExecutionOptions& options,
                     bool hold, uint64_t output_window)
    : spec_(spec),
      options_(options),
      hold_(hold),
      queue_(options.queue_bytes),
      windowed_(output_window > 0),
      credit_(output_window) {
  cancel_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

Execution::~Execution() { CloseFd(&cancel_fd_); }

absl::StatusOr<std::shared_ptr<Execution>> Execution::Start(
    const CommandSpec& spec, const ExecutionOptions& options, bool hold,
    uint64_t output_window) {
  absl::Status status = ValidateCommandSpec(spec);
  if (!status.ok()) return status;
  std::shared_ptr<Execution> execution(
      new Execution(spec, options, hold, output_window));
  if (execution->cancel_fd_ < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  std::thread([execution] { execution->Supervise(); }).detach();
  return execution;
}

void Execution::CallerGone() {
  // Nobody grants credit any more: the window no longer holds the output.
  caller_gone_.store(true);
  Wake();
  if (spec_.survive_caller() || hold_) return;
  Cancel();
}

ExecutionOutcome Execution::outcome() const {
  absl::MutexLock lock(&outcome_mu_);
  return outcome_;
}

void Execution::KeepTail(int stream, const char* data, size_t n) {
  if (!hold_ || options_.tail_bytes == 0) return;
  absl::MutexLock lock(&outcome_mu_);
  std::string& tail = outcome_.tail[stream];
  tail.append(data, n);
  if (tail.size() > options_.tail_bytes) {
    const size_t drop = tail.size() - options_.tail_bytes;
    tail.erase(0, drop);
    outcome_.tail_offset[stream] += drop;
  }
}

void Execution::AddCredit(uint64_t bytes) {
  if (!windowed_ || bytes == 0) return;
  {
    absl::MutexLock lock(&credit_mu_);
    credit_ += bytes;
  }
  Wake();
}

uint64_t Execution::Credit() const {
  if (!windowed_ || caller_gone_.load()) return UINT64_MAX;
  absl::MutexLock lock(&credit_mu_);
  return credit_;
}

void Execution::UseCredit(uint64_t bytes) {
  if (!windowed_) return;
  absl::MutexLock lock(&credit_mu_);
  credit_ -= std::min(credit_, bytes);
}

void Execution::Cancel() {
  cancel_requested_.store(true);
  Wake();
}

void Execution::Wake() {
  uint64_t one = 1;
  ssize_t ignored = write(cancel_fd_, &one, sizeof(one));
  (void)ignored;
}

void Execution::Supervise() {
  // A command that exits (or closes stdin) before reading all its input makes
  // our write() raise SIGPIPE, which would kill the whole daemon. Blocked in
  // this thread, the write fails with EPIPE instead.
  sigset_t sigpipe;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigpipe, nullptr);

  const absl::Time start = absl::Now();
  ExitStatus exit;

  // When the command's process was reaped (for the reported duration).
  absl::Time ended = absl::InfiniteFuture();
  auto finish = [&](ExitStatus status) {
    SetDuration((ended == absl::InfiniteFuture() ? absl::Now() : ended) - start,
                status.mutable_duration());
    {
      absl::MutexLock lock(&outcome_mu_);
      outcome_.finished = true;
      outcome_.exit = status;
      outcome_.finish_time = absl::Now();
    }
    ExecuteEvent ev;
    *ev.mutable_exited() = std::move(status);
    queue_.Push(std::move(ev), 64);
    queue_.CloseProducer();
    finished_.store(true);
  };
  auto start_failed = [&](std::string error) {
    ExitStatus status;
    status.set_kind(ExitStatus::KIND_START_FAILED);
    status.set_error(std::move(error));
    finish(std::move(status));
  };

  // --- Prepare everything the child needs before spawning. ---------------
  std::vector<std::string> args;
  if (!spec_.shell().empty()) {
    args = {"/bin/sh", "-c", spec_.shell()};
  } else {
    args.assign(spec_.argv().begin(), spec_.argv().end());
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::map<std::string, std::string> env_map;
  if (!spec_.clean_env()) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      absl::string_view kv(*e);
      size_t eq = kv.find('=');
      if (eq == absl::string_view::npos) continue;
      env_map[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    }
  }
  for (const auto& [k, v] : spec_.env()) env_map[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env_map)
    env_strings.push_back(absl::StrCat(k, "=", v));
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  const std::string cwd = spec_.working_dir().empty()
                              ? options_.default_working_dir
                              : spec_.working_dir();
  struct stat st {};
  if (stat(cwd.c_str(), &st) != 0) {
    start_failed(
        absl::StrCat("working directory ", cwd, ": ", std::strerror(errno)));
    return;
  }
  if (!S_ISDIR(st.st_mode)) {
    start_failed(
        absl::StrCat("working directory ", cwd, ": ", std::strerror(ENOTDIR)));
    return;
  }

  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, in_pipe[2] = {-1, -1};
  const bool has_stdin = !spec_.stdin().empty();
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0 ||
      (has_stdin && pipe2(in_pipe, O_CLOEXEC) != 0)) {
    int err = errno;
    for (int* fd : {&out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1],
                    &in_pipe[0], &in_pipe[1]}) {
      CloseFd(fd);
    }
    start_failed(absl::StrCat("cannot create pipes: ", std::strerror(err)));
    return;
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (has_stdin) {
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  } else {
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  // Nothing of the daemon's (sockets, files) leaks into the command.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty_mask, all_signals;
  sigemptyset(&empty_mask);
  sigfillset(&all_signals);
  posix_spawnattr_setsigmask(&attr, &empty_mask);
  posix_spawnattr_setsigdefault(&attr, &all_signals);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);

  pid_t pid = -1;
  int spawn_err =
      posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  CloseFd(&out_pipe[1]);
  CloseFd(&err_pipe[1]);
  CloseFd(&in_pipe[0]);
  if (spawn_err != 0) {
    CloseFd(&out_pipe[0]);
    CloseFd(&err_pipe[0]);
    CloseFd(&in_pipe[1]);
    start_failed(absl::StrCat("cannot run \"", args[0],
                              "\": ", std::strerror(spawn_err)));
    return;
  }

  {
    ExecuteEvent ev;
    ev.mutable_started()->set_pid(pid);
    SetTimestamp(start, ev.mutable_started()->mutable_start_time());
    {
      absl::MutexLock lock(&outcome_mu_);
      outcome_.started = true;
      outcome_.started_event = ev.started();
    }
    queue_.Push(std::move(ev), 64);
  }

  // --- Supervise. -------------------------------------------------------
  OutputPipe pipes[2];
  pipes[0].fd = out_pipe[0];
  pipes[0].stream = varan::v1::OUTPUT_STREAM_STDOUT;
  pipes[1].fd = err_pipe[0];
  pipes[1].stream = varan::v1::OUTPUT_STREAM_STDERR;
  int stdin_fd = in_pipe[1];
  size_t stdin_off = 0;
  for (int fd : {pipes[0].fd, pipes[1].fd, stdin_fd}) {
    if (fd >= 0) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  // Bigger pipes: fewer, larger reads of a fast writer. Refused (over
  // /proc/sys/fs/pipe-max-size for an unprivileged user): the default stays.
  for (const OutputPipe& p : pipes) {
    if (options_.pipe_bytes > 0) {
      (void)fcntl(p.fd, F_SETPIPE_SZ, static_cast<int>(options_.pipe_bytes));
    }
  }
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));

  const uint64_t limit = spec_.output_limit_bytes();
  absl::Duration timeout = FromDuration(spec_.timeout());
  absl::Time timeout_at =
      timeout > absl::ZeroDuration() ? start + timeout : absl::InfiniteFuture();
  absl::Time kill_at = absl::InfiniteFuture();
  absl::Time linger_until = absl::InfiniteFuture();
  bool reaped = false, term_sent = false;
  // Why we stopped the command, if we did; decides the exit status kind.
  ExitStatus::Kind stopped_for = ExitStatus::KIND_UNSPECIFIED;
  int wait_status = 0;
  bool consumer_gone = false;

  auto stop_group = [&](ExitStatus::Kind reason) {
    if (term_sent || reaped) return;
    term_sent = true;
    stopped_for = reason;
    kill(-pid, SIGTERM);
    kill_at = absl::Now() + options_.kill_grace;
  };
  auto try_reap = [&] {
    if (reaped || waitpid(pid, &wait_status, WNOHANG) != pid) return;
    reaped = true;
    ended = absl::Now();
    // Background children of the command must not outlive it.
    kill(-pid, SIGKILL);
    linger_until = ended + absl::Seconds(2);
    CloseFd(&stdin_fd);
  };

  while (true) {
    if (reaped && pipes[0].fd < 0 && pipes[1].fd < 0) break;
    absl::Time now = absl::Now();
    if (now >= timeout_at && !reaped) {
      stop_group(ExitStatus::KIND_TIMED_OUT);
      timeout_at = absl::InfiniteFuture();
    }
    if (now >= kill_at) {
      kill(-pid, SIGKILL);
      kill_at = absl::InfiniteFuture();
    }
    if (now >= linger_until) {
      // The command exited but something outside its process group still
      // holds its output open; stop waiting for it.
      CloseFd(&pipes[0].fd);
      CloseFd(&pipes[1].fd);
      break;
    }
    if (cancel_requested_.load() && !term_sent && !reaped) {
      stop_group(ExitStatus::KIND_CANCELED);
    }
    // Output window used up: leave the pipes unread (the command blocks on
    // them) until credit comes (AddCredit wakes the poll).
    const uint64_t credit = consumer_gone ? UINT64_MAX : Credit();
    if (credit == 0 && reaped) linger_until = now + absl::Seconds(2);

    pollfd fds[5];
    int n = 0;
    int idx_out = -1, idx_err = -1, idx_in = -1, idx_cancel = -1, idx_pid = -1;
    if (pipes[0].fd >= 0 && credit > 0) {
      idx_out = n;
      fds[n++] = {pipes[0].fd, POLLIN, 0};
    }
    if (pipes[1].fd >= 0 && credit > 0) {
      idx_err = n;
      fds[n++] = {pipes[1].fd, POLLIN, 0};
    }
    if (stdin_fd >= 0) {
      idx_in = n;
      fds[n++] = {stdin_fd, POLLOUT, 0};
    }
    idx_cancel = n;
    fds[n++] = {cancel_fd_, POLLIN, 0};
    if (!reaped && pidfd >= 0) {
      idx_pid = n;
      fds[n++] = {pidfd, POLLIN, 0};
    }
    absl::Time next = std::min({timeout_at, kill_at, linger_until});
    int wait_ms = PollTimeout(now, next);
    if (pidfd < 0 && !reaped) {
      // No pidfd (old kernel): look for the exit every 50 ms.
      wait_ms = wait_ms < 0 ? 50 : std::min(wait_ms, 50);
    }
    int ready = poll(fds, static_cast<nfds_t>(n), wait_ms);
    if (ready < 0 && errno != EINTR) {
      spdlog::error("poll failed while supervising pid {}: {}", pid,
                    std::strerror(errno));
      stop_group(ExitStatus::KIND_CANCELED);
    }

    if (idx_cancel >= 0 && (fds[idx_cancel].revents & POLLIN)) {
      uint64_t v;
      ssize_t ignored = read(cancel_fd_, &v, sizeof(v));
      (void)ignored;
    }

    if (idx_in >= 0 && fds[idx_in].revents != 0) {
      const std::string& data = spec_.stdin();
      ssize_t w =
          write(stdin_fd, data.data() + stdin_off, data.size() - stdin_off);
      if (w > 0) stdin_off += static_cast<size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
          stdin_off >= data.size()) {
        CloseFd(&stdin_fd);  // EOF for the command (or it closed stdin)
      }
    }

    for (int which = 0; which < 2; ++which) {
      int idx = which == 0 ? idx_out : idx_err;
      if (idx < 0 || fds[idx].revents == 0) continue;
      OutputPipe& p = pipes[which];
      // Read what the pipe holds (up to a chunk and the credit) straight
      // into the event: one copy, from the kernel; a lone line goes out at
      // once.
      const uint64_t allowed = std::min<uint64_t>(
          {options_.max_chunk_bytes, consumer_gone ? UINT64_MAX : Credit()});
      if (allowed == 0) continue;
      int available = 0;
      if (ioctl(p.fd, FIONREAD, &available) != 0 || available <= 0) {
        available = 4096;  // EOF or error: the read tells
      }
      const size_t want = static_cast<size_t>(
          std::min<uint64_t>(allowed, static_cast<uint64_t>(available)));
      ExecuteEvent ev;
      std::string* data = ev.mutable_output()->mutable_data();
      data->resize(want);
      ssize_t r = read(p.fd, data->data(), want);
      if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        CloseFd(&p.fd);
        continue;
      }
      if (r == 0) {
        CloseFd(&p.fd);
        continue;
      }
      uint64_t len = static_cast<uint64_t>(r);
      uint64_t keep = len;
      if (limit > 0) {
        uint64_t room = limit > p.delivered ? limit - p.delivered : 0;
        keep = std::min(len, room);
      }
      p.dropped += len - keep;
      if (p.dropped > 0 && spec_.stop_at_output_limit()) {
        stop_group(ExitStatus::KIND_OUTPUT_LIMIT);
      }
      if (keep == 0) continue;
      data->resize(keep);
      KeepTail(which, data->data(), keep);
      auto* chunk = ev.mutable_output();
      chunk->set_offset(p.delivered);
      p.delivered += keep;
      if (consumer_gone) continue;
      UseCredit(keep);
      chunk->set_stream(p.stream);
      chunk->set_sequence(p.sequence++);
      // Wait for the consumer to make room (back-pressure), but keep
      // enforcing the timeout, cancellation and the kill escalation while
      // waiting: a stalled reader must not keep a hung command alive.
      while (true) {
        absl::Time wake = std::min(
            {timeout_at, kill_at, absl::Now() + absl::Milliseconds(100)});
        auto pushed = queue_.PushUntil(&ev, keep, wake);
        if (pushed == EventQueue::PushResult::kPushed) break;
        if (pushed == EventQueue::PushResult::kAbandoned) {
          // Nobody is listening any more: the caller went away. Unless
          // asked to survive that, the command goes too.
          consumer_gone = true;
          if (!spec_.survive_caller() && !hold_) {
            stop_group(ExitStatus::KIND_CANCELED);
          }
          break;
        }
        const absl::Time now_waiting = absl::Now();
        if (now_waiting >= timeout_at && !reaped) {
          stop_group(ExitStatus::KIND_TIMED_OUT);
          timeout_at = absl::InfiniteFuture();
        }
        if (cancel_requested_.load()) stop_group(ExitStatus::KIND_CANCELED);
        if (now_waiting >= kill_at) {
          kill(-pid, SIGKILL);
          kill_at = absl::InfiniteFuture();
        }
        try_reap();
        // Time spent waiting for the reader does not count against the
        // linger for pipes left open after the command exited.
        if (reaped) linger_until = absl::Now() + absl::Seconds(2);
      }
    }

    if (!reaped && (idx_pid < 0 || (fds[idx_pid].revents & POLLIN))) {
      try_reap();
    }
  }
  CloseFd(&stdin_fd);
  if (pidfd >= 0) close(pidfd);
  if (!reaped) {
    // Only reachable if the loop was left early; make sure the child is gone.
    kill(-pid, SIGKILL);
    waitpid(pid, &wait_status, 0);
    ended = absl::Now();
  }

  if (stopped_for != ExitStatus::KIND_UNSPECIFIED) {
    exit.set_kind(stopped_for);
  } else if (WIFSIGNALED(wait_status)) {
    exit.set_kind(ExitStatus::KIND_SIGNALED);
  } else {
    exit.set_kind(ExitStatus::KIND_EXITED);
  }
  if (WIFEXITED(wait_status)) exit.set_code(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) exit.set_signal(WTERMSIG(wait_status));
  exit.set_stdout_dropped_bytes(pipes[0].dropped);
  exit.set_stderr_dropped_bytes(pipes[1].dropped);
  finish(std::move(exit));
}

}  // namespace varan::periphery

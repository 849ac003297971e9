#!/bin/bash
# Runs the benchmarks and writes their report (BENCHMARKS.md):
#   bench/run.sh [--quick] [--section replicas] BIN_DIR OUT
# BIN_DIR holds a Release build of core_bench, agent_bench and the daemons
# (`make bench` / `make bench-quick` build them). Installs the peers from
# Debian (bench/peers/install.sh), starts an sshd of its own on loopback
# for them (bench/peers/peers.sh) and stops it on exit.
#   full:  fan-out to N = 20 (10 runs, 2 warm-up) and N = 100 (5 runs, 1
#          warm-up: ansible takes tens of seconds a run there), versus pdsh,
#          clush and ansible; output_bench (3 rounds of 1 GiB of stdout
#          through core versus ssh to the same sshd, then a 4 GiB flood with
#          default limits); then exec_bench (single-target latency),
#          core_bench's jobs/s and agent_bench.
#   quick: fan-out to N = 20 only (3 runs, 1 warm-up), output_bench with 3
#          rounds of 256 MiB and a 1 GiB flood, and a shorter exec_bench.
# Both also run fleet scale (fleet_sim): 10,000 simulated peripheries in
# tunnel and dial mode (quick: 1,000, shorter idle window), then section 5,
# several core replicas on a PostgreSQL 15 that this script starts
# (bench/postgres.sh) and stops: replica_bench (exec same versus cross
# replica; jobs/s on SQLite, PostgreSQL with one core and 1 and 3
# replicas) and fleet_sim --replicas 3 (quick: fewer runs, 1,000
# peripheries); and end with bench/LIMITS.md, what the profiles showed.
# --section replicas runs section 5 alone and writes only it to OUT (no
# peers needed), with the machine's load and the commit.
set -euo pipefail
mode=full
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) mode=quick; shift ;;
    --section)
      [ "${2:-}" = replicas ] || { echo "bench/run.sh: --section replicas" >&2; exit 2; }
      only=$2
      shift 2
      ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || { echo "usage: bench/run.sh [--quick] [--section replicas] BIN_DIR OUT" >&2; exit 2; }
BIN=$(cd "$1" && pwd)
OUT=$2
HERE=$(cd "$(dirname "$0")" && pwd)

if [ "$mode" = quick ]; then
  sizes="20"
  plan="20:3:1"
else
  sizes="20 100"
  plan="20:10:2 100:5:1"
fi

# shellcheck source=postgres.sh
. "$HERE/postgres.sh"
work=$(mktemp -d /tmp/varan-bench.XXXXXX)
# output_bench's generator, where the peers' user can run it too (work is
# private to this user).
gen=$(mktemp -d /tmp/varan-bench-gen.XXXXXX)
# Section 5's PostgreSQL: a directory its server's user owns.
pgdir=$(mktemp -d /tmp/varan-bench-pg.XXXXXX)
cleanup() {
  [ -n "$only" ] || peers_down "$work/peers"
  pg_down "$pgdir"
  rm -rf "$work" "$gen" "$pgdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# 5. Several core replicas on PostgreSQL (#19), appended to $1.
replicas_section() {
  local out=$1 bench_args fleet5
  if [ "$mode" = quick ]; then
    bench_args="--runs 100 --warmup 10 --seconds 5"
    fleet5="--peripheries 1000 --idle-seconds 5 --fanouts 3 --replicas 3"
  else
    bench_args="--runs 300 --warmup 30 --seconds 10"
    fleet5="--peripheries 10000 --idle-seconds 30 --fanouts 5 --replicas 3"
  fi
  echo "bench: replicas: starting PostgreSQL 15" >&2
  pg_up "$pgdir"
  {
    echo "## 5. Several core replicas on PostgreSQL"
    echo
    echo "A PostgreSQL 15 (Debian's postgresql-15 with its defaults: fsync on)"
    echo "started by bench/run.sh for this section on 127.0.0.1, and stopped"
    echo "after it; each setup gets a new database on it. Every core is a real"
    echo "varan-core process on loopback; replicas run with --replica-address"
    echo "(their own listen address) on one database. PostgreSQL, the cores"
    echo "and the benchmark's client all share this machine's $(nproc) CPUs, so"
    echo "every ratio is against the peer measured in the same run. Load"
    echo "average at the start of the section: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
  } >>"$out"
  echo "bench: replica_bench $bench_args" >&2
  # A failed check is reported in the section (the table says which) and
  # does not end the run: the rest of it is measured all the same.
  local rc=0
  # shellcheck disable=SC2086
  "$BIN/replica_bench" --postgres "$PG_URL" $bench_args >>"$out" || rc=$?
  if [ "$rc" != 0 ]; then
    printf '**replica_bench exited with status %s: a check failed (see above).**\n\n' "$rc" >>"$out"
  fi
  echo "bench: fleet_sim $fleet5" >&2
  {
    echo "\`fleet_sim $fleet5\` (load average $(cut -d' ' -f1-3 /proc/loadavg))."
    echo
  } >>"$out"
  rc=0
  # shellcheck disable=SC2086
  "$BIN/fleet_sim" $fleet5 --postgres "$PG_URL" >>"$out" || rc=$?
  if [ "$rc" != 0 ]; then
    printf '**fleet_sim exited with status %s: a check failed (see above).**\n\n' "$rc" >>"$out"
  fi
  pg_down "$pgdir"
  echo "load average at the end of section 5 (1, 5, 15 min): $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out"
  echo >>"$out"
}

if [ -n "$only" ]; then
  report="$work/report.md"
  {
    echo "<!-- bench/run.sh$([ "$mode" = quick ] && echo ' --quick') --section replicas on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, load average at start $load_start -->"
    echo
  } >"$report"
  replicas_section "$report"
  cp "$report" "$OUT"
  echo "bench: wrote $OUT" >&2
  exit 0
fi

"$HERE/peers/install.sh"
# shellcheck source=peers/peers.sh
. "$HERE/peers/peers.sh"
peers_up "$work/peers" $sizes
. "$work/peers/env"

version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
report="$work/report.md"
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench$([ "$mode" = quick ] && echo -quick)\` (\`bench/run.sh\`$([ "$mode" = quick ] && echo ' --quick')) on $(date -u '+%Y-%m-%d %H:%M UTC'), commit \`$(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo '?')\`."
  echo
  echo "## Machine"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| CPUs (\`nproc\`) | $(nproc) |"
  echo "| CPU model | ${cpu:-?} |"
  echo "| kernel | $(uname -r) |"
  echo "| load average at start (1, 5, 15 min) | $load_start |"
  echo "| peers (Debian) | openssh-server $(version openssh-server), pdsh $(version pdsh), clustershell $(version clustershell), ansible-core $(version ansible-core) |"
  echo
  echo "Every figure is wall time from posix_spawn to waitpid, with stdout and"
  echo "stderr on /dev/null. A load average at start above the CPU count means"
  echo "other work shared the machine during the run and the absolute figures"
  echo "are inflated by it; each way is interleaved run by run with the others,"
  echo "so load falls on all alike, and the ratios within one table are what"
  echo "to compare."
  echo
  if awk -v l="${load_start%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n) }'; then
    echo "**This run was disturbed: the 1-minute load average at start"
    echo "(${load_start%% *}) exceeds the $(nproc) CPUs, so other work competed with"
    echo "every figure below.**"
    echo
  fi
  echo "## 1. Fan-out of \`true\`: Varan versus pdsh, clush and ansible"
  echo
  echo "Varan: a real varan-core and N real varan-periphery processes on this"
  echo "machine (gRPC on loopback). The peers: one sshd started for them on"
  echo "127.0.0.1 (own config, host key and authorized key; MaxStartups and"
  echo "MaxSessions 1000; UsePAM no; UseDNS no), N host aliases bench-1..N in"
  echo "an ssh config all pointing at it, logged in as a plain user whose"
  echo "shell is dash (no rc files). pdsh with \`-f N\` and ClusterShell with"
  echo "fanout 256, so neither serialises; Ansible with its defaults (ssh"
  echo "with ControlPersist, so runs after the first reuse connections; no"
  echo "pipelining) and forks 256. Each peer command must exit 0."
  echo
} > "$report"

for step in $plan; do
  IFS=: read -r n runs warmup <<< "$step"
  echo "bench: fan-out to $n ($runs runs, $warmup warm-up)" >&2
  "$BIN/core_bench" --bench fanout --peripheries "$n" --runs "$runs" \
    --warmup "$warmup" --peers "$work/peers/peers-$n.txt" >> "$report"
done

if [ "$mode" = quick ]; then
  fleet="--peripheries 1000 --idle-seconds 5 --fanouts 3"
else
  fleet="--peripheries 10000 --idle-seconds 30 --fanouts 5"
fi
echo "bench: fleet_sim $fleet" >&2
{
  echo "## 3. Fleet scale"
  echo
  echo "\`fleet_sim $fleet\` (load average $(cut -d' ' -f1-3 /proc/loadavg))."
  echo
} >> "$report"
# shellcheck disable=SC2086
"$BIN/fleet_sim" $fleet >> "$report"

if [ "$mode" = quick ]; then
  output="--mib 256 --rounds 3 --flood-mib 1024"
else
  output="--mib 1024 --rounds 3 --flood-mib 4096"
fi
chmod 755 "$gen"
install -m 755 "$BIN/output_gen" "$gen/output_gen"
echo "bench: output_bench $output" >&2
{
  echo "## 4. Output: Varan versus ssh"
  echo
  # shellcheck disable=SC2086
  "$BIN/output_bench" $output --generator "$gen/output_gen" \
    --ssh-config "$work/peers/ssh_config" --ssh-host bench-1
} >> "$report"

replicas_section "$report"

echo "## Other benchmarks (Varan alone)" >> "$report"
echo >> "$report"
echo "bench: exec_bench" >&2
if [ "$mode" = full ]; then
  "$BIN/exec_bench" --bench latency --runs 1000 --warmup 100 >> "$report"
else
  "$BIN/exec_bench" --bench latency --runs 200 --warmup 20 >> "$report"
fi
echo "bench: tls_bench" >&2
if [ "$mode" = full ]; then
  "$BIN/tls_bench" --peripheries 20 --runs 300 --fanout-runs 40 >> "$report"
else
  "$BIN/tls_bench" --peripheries 5 --runs 50 --fanout-runs 10 >> "$report"
fi
if [ "$mode" = full ]; then
  echo "bench: core_bench --bench jobs" >&2
  "$BIN/core_bench" --bench jobs >> "$report"
  echo "bench: agent_bench" >&2
  {
    echo "### Agent.Execute against a bare posix_spawn, and 1 GiB of stdout through it (agent_bench; load average $(cut -d' ' -f1-3 /proc/loadavg))"
    echo
  } >> "$report"
  "$BIN/agent_bench" >> "$report"
  echo >> "$report"
fi
echo "load average at the end (1, 5, 15 min): $(cut -d' ' -f1-3 /proc/loadavg)" >> "$report"
echo >> "$report"
cat "$HERE/LIMITS.md" >> "$report"
cp "$report" "$OUT"
echo "bench: wrote $OUT" >&2

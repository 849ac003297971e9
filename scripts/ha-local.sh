#!/usr/bin/env bash
# Varan with several core replicas on this machine (#19): a PostgreSQL 15
# of its own (Debian's postgresql-15), three varan-core replicas sharing its
# database, and two varan-periphery agents that know all three replicas.
# Runs a first command through varanctl on replica 2, then stays in the
# foreground until Ctrl-C, which stops everything it started. Kill a
# replica meanwhile to watch its peripheries move to another one.
#
# Usage: scripts/ha-local.sh [start] [--detach] [BIN_DIR]
#          start everything (BIN_DIR: build/bin); --detach returns once it
#          runs, and `scripts/ha-local.sh stop` stops it
#        scripts/ha-local.sh stop     stop what a start left running
#        scripts/ha-local.sh status   what runs, and where
# Env:   VARAN_HA_DIR (/tmp/varan-ha): state, tokens, logs; a new start
#          empties it (only a directory this script made)
#        VARAN_HA_PORT (7710): replica N listens on PORT+N-1, on loopback
#        VARAN_HA_REPLICAS (3), VARAN_HA_PERIPHERIES (2)
#        VARAN_HA_PG_BIN (/usr/lib/postgresql/15/bin)
#        VARAN_HA_PG_PORT (the first free port from 55432)
#        VARAN_HA_PG_USER (postgres, else nobody): who runs PostgreSQL when
#          this script runs as root (PostgreSQL refuses to run as root)
set -euo pipefail

STATE="${VARAN_HA_DIR:-/tmp/varan-ha}"
STATE="${STATE%/}"
case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac
MARKER="$STATE/.varan-ha-local"
PIDS="$STATE/pids"
PG_BIN="${VARAN_HA_PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_DIR="$STATE/postgres"
PG_DATA="$PG_DIR/data"
BASE_PORT="${VARAN_HA_PORT:-7710}"
REPLICAS="${VARAN_HA_REPLICAS:-3}"
PERIPHERIES="${VARAN_HA_PERIPHERIES:-2}"
# How to call this script again, for the hints it prints.
SELF="$0"
if [ -n "${VARAN_HA_DIR:-}" ]; then SELF="VARAN_HA_DIR=$STATE $SELF"; fi

die() {
  echo "ha-local.sh: $*" >&2
  exit 1
}

# --- processes this script started (pid files in $PIDS) --------------------

# alive PID: the process exists and is no zombie.
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# ours PID: a live process whose command line names the state directory
# (every daemon here gets a directory under it), so a pid reused by an
# unrelated process since is never signalled.
ours() {
  alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null |
    grep -qF -- "$STATE/"
}

# The names with a pid file: peripheries first, then replicas.
recorded() {
  local f
  for f in "$PIDS"/periphery-*.pid "$PIDS"/core-*.pid; do
    [ -e "$f" ] && basename "$f" .pid
  done
  return 0
}

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

# stop_daemon NAME: SIGTERM, up to 15 s to exit, then SIGKILL.
stop_daemon() {
  local name=$1 pid
  pid=$(pid_of "$name")
  if [ -n "$pid" ] && ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      echo "$name (pid $pid) did not stop in 15 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "stopped $name"
  fi
  rm -f "$PIDS/$name.pid"
}

# --- PostgreSQL --------------------------------------------------------------

PG_AS=()
if [ "$(id -u)" = 0 ]; then
  PG_USER="${VARAN_HA_PG_USER:-}"
  if [ -z "$PG_USER" ]; then
    if id -u postgres >/dev/null 2>&1; then PG_USER=postgres; else PG_USER=nobody; fi
  fi
  PG_AS=(runuser -u "$PG_USER" --)
fi

# as_pg COMMAND...: as the server's user, from its directory (that user
# may not be able to read the current one).
as_pg() {
  (cd "$PG_DIR" && "${PG_AS[@]}" "$@")
}

# pg PROGRAM ARGS...: a PostgreSQL program, as the server's user.
pg() { as_pg "$PG_BIN/$1" "${@:2}"; }

pg_running() {
  [ -f "$PG_DATA/postmaster.pid" ] && pg pg_ctl status -D "$PG_DATA" >/dev/null 2>&1
}

stop_postgres() {
  if pg_running; then
    pg pg_ctl stop -D "$PG_DATA" -m fast -w -t 30 >/dev/null
    echo "stopped postgres"
  fi
}

# --- stop, status ------------------------------------------------------------

is_state_dir() { [ -f "$MARKER" ]; }

stop_all() {
  is_state_dir || return 0
  touch "$STATE/stopping"
  local name
  for name in $(recorded); do stop_daemon "$name"; done
  stop_postgres
}

status() {
  if ! is_state_dir; then
    echo "nothing started in $STATE"
    return 0
  fi
  local name pid any=0
  for name in $(recorded); do
    pid=$(pid_of "$name")
    if [ -n "$pid" ] && ours "$pid"; then
      echo "$name: running (pid $pid, log $STATE/$name.log)"
      any=1
    else
      echo "$name: not running (log $STATE/$name.log)"
    fi
  done
  if pg_running; then
    echo "postgres: running (port $(cat "$STATE/postgres.port"), log $PG_DIR/postgres.log)"
    any=1
  fi
  [ "$any" = 1 ] || echo "nothing runs (state in $STATE)"
}

# --- arguments ---------------------------------------------------------------

command=start
detach=0
BIN=build/bin
case "${1:-}" in
  start | stop | status) command=$1; shift ;;
esac
for arg in "$@"; do
  case "$arg" in
    --detach) detach=1 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    -*) die "unknown option $arg (see --help)" ;;
    *) BIN=${arg%/} ;;
  esac
done

case "$command" in
  stop)
    if is_state_dir; then
      stop_all
      echo "Stopped (state and logs stay in $STATE)."
    else
      echo "nothing started in $STATE"
    fi
    exit 0
    ;;
  status) status; exit 0 ;;
esac

# --- start -------------------------------------------------------------------

[[ "$REPLICAS" =~ ^[1-9][0-9]*$ ]] || die "VARAN_HA_REPLICAS must be a positive number"
[[ "$PERIPHERIES" =~ ^[1-9][0-9]*$ ]] || die "VARAN_HA_PERIPHERIES must be a positive number"
[[ "$BASE_PORT" =~ ^[1-9][0-9]*$ ]] || die "VARAN_HA_PORT must be a port number"
for program in varan-core varan-periphery varanctl; do
  [ -x "$BIN/$program" ] || die "$BIN/$program not found: build first (make), or pass the bin directory"
done
for program in initdb pg_ctl psql; do
  [ -x "$PG_BIN/$program" ] ||
    die "$PG_BIN/$program not found: install postgresql-15 (scripts/install-deps.sh) or set VARAN_HA_PG_BIN"
done
BIN="$(cd "$BIN" && pwd)"

# A directory this script did not make is never emptied.
if [ -e "$STATE" ] && ! is_state_dir && [ -n "$(ls -A "$STATE" 2>/dev/null)" ]; then
  die "$STATE exists and was not made by this script; set VARAN_HA_DIR to another directory"
fi
if is_state_dir; then
  for name in $(recorded); do
    pid=$(pid_of "$name")
    if [ -n "$pid" ] && ours "$pid"; then
      die "already running ($name is pid $pid); $SELF stop first"
    fi
  done
  if pg_running; then
    die "already running (PostgreSQL in $PG_DATA); $SELF stop first"
  fi
  rm -rf "$STATE"
fi
mkdir -p "$STATE" "$PIDS"
chmod 0755 "$STATE"  # the server's user passes through to its directory
touch "$MARKER"

# Loopback: IPv6 where this machine has ::1, else IPv4 (as core's [::]
# falls back by itself).
if grep -q '^0\{31\}1 ' /proc/net/if_inet6 2>/dev/null; then
  replica_address() { echo "[::1]:$((BASE_PORT + $1 - 1))"; }
else
  replica_address() { echo "127.0.0.1:$((BASE_PORT + $1 - 1))"; }
fi

port_in_use() {
  if command -v ss >/dev/null; then
    ss -Htln "sport = :$1" | grep -q .
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

for i in $(seq 1 "$REPLICAS"); do
  port=$((BASE_PORT + i - 1))
  port_in_use "$port" && die "port $port is in use (replica $i); set VARAN_HA_PORT"
done
if [ -n "${VARAN_HA_PG_PORT:-}" ]; then
  PG_PORT=$VARAN_HA_PG_PORT
  port_in_use "$PG_PORT" && die "port $PG_PORT (VARAN_HA_PG_PORT) is in use"
else
  PG_PORT=55432
  while port_in_use "$PG_PORT"; do PG_PORT=$((PG_PORT + 1)); done
fi

# From here on, whatever fails stops what was started.
# shellcheck disable=SC2317  # called by the trap
on_exit() {
  local status=$?
  trap - INT TERM EXIT
  if [ "$status" != 0 ]; then
    echo >&2
    echo "Stopping what was started (logs stay in $STATE)..." >&2
  fi
  stop_all >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  exit "$status"
}
trap on_exit EXIT
trap 'echo; echo "Stopping..."; stop_all; wait 2>/dev/null || true; trap - EXIT; echo "Stopped."; exit 0' INT TERM

# The secrets: 32 random bytes in hex, files only this user reads.
secret() { od -An -vtx1 -N32 /dev/urandom | tr -d ' \n'; }
umask 077
secret >"$STATE/join.token"
secret >"$STATE/admin.token"
umask 022

# PostgreSQL: its own cluster, owned by the server's user; the superuser
# connects over the socket (in a directory only that user can enter), the
# role varan with a password over TCP on 127.0.0.1.
mkdir -p "$PG_DIR"
chmod 0700 "$PG_DIR"
if [ "${#PG_AS[@]}" -gt 0 ]; then chown "$PG_USER:" "$PG_DIR"; fi
echo "$PG_PORT" >"$STATE/postgres.port"
pg initdb -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  -E UTF8 --no-locale --no-sync >"$STATE/initdb.log" 2>&1 ||
  { cat "$STATE/initdb.log" >&2; die "initdb failed"; }
as_pg mkdir -m 0700 "$PG_DIR/run"
as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<CONF
# scripts/ha-local.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR/run'
CONF
pg pg_ctl start -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t 30 >/dev/null ||
  { cat "$PG_DIR/postgres.log" >&2; die "PostgreSQL did not start"; }
password=$(secret)
pg psql -h "$PG_DIR/run" -p "$PG_PORT" -U postgres -d postgres -q -v ON_ERROR_STOP=1 <<SQL
CREATE ROLE varan LOGIN PASSWORD '$password';
CREATE DATABASE varan OWNER varan;
SQL
umask 077
# sslmode=disable: the server has no certificate, and this is loopback.
echo "postgres://varan:$password@127.0.0.1:$PG_PORT/varan?sslmode=disable" >"$STATE/database.url"
umask 022
unset password
echo "PostgreSQL 15 is up on 127.0.0.1:$PG_PORT, database varan (log: $PG_DIR/postgres.log)"

# wait_for NAME CHECK...: polls CHECK every 0.1 s for up to 20 s while NAME
# lives; on its death or a timeout, shows its log and fails.
wait_for() {
  local name=$1 pid
  shift
  pid=$(pid_of "$name")
  for _ in $(seq 1 200); do
    if ! alive "$pid"; then
      echo "$name failed to start:" >&2
      cat "$STATE/$name.log" >&2
      exit 1
    fi
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not become ready in 20 s:" >&2
  cat "$STATE/$name.log" >&2
  exit 1
}

# launch NAME COMMAND...: in the background, output to NAME.log, pid in
# $PIDS/NAME.pid.
launch() {
  local name=$1
  shift
  "$@" </dev/null >"$STATE/$name.log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
}

# TLS on the built-in cluster CA, which the first replica creates and the
# others take from the database: clients and peripheries verify every
# replica by its pin, read from the first replica's join token
# (<secret>.sha256:<hex>) once it has started.
PIN=""
ctl() {  # ctl REPLICA ARGS...: varanctl against one replica
  "$BIN/varanctl" --core "$(replica_address "$1")" --token-file "$STATE/admin.token" \
    --ca-hash "$PIN" "${@:2}"
}
# shellcheck disable=SC2317  # called by wait_for
ca_pinned() {  # sets PIN once replica 1 wrote its join token
  [ -s "$STATE/core-1/join.token" ] || return 1
  PIN=$(sed 's/^[^.]*\.//' "$STATE/core-1/join.token")
  [ -n "$PIN" ] && ctl 1 peripheries list
}

# The replicas: each its own data directory and port, all on the same
# database, the same join and admin tokens, each announcing its own address
# to the others.
for i in $(seq 1 "$REPLICAS"); do
  address=$(replica_address "$i")
  launch "core-$i" "$BIN/varan-core" --listen "$address" \
    --data-dir "$STATE/core-$i" --database-file "$STATE/database.url" \
    --replica-address "$address" \
    --join-token-file "$STATE/join.token" --admin-token-file "$STATE/admin.token"
  if [ "$i" = 1 ]; then
    wait_for "core-$i" ca_pinned
  else
    wait_for "core-$i" ctl "$i" peripheries list
  fi
  echo "varan-core replica $i is up on $address (log: $STATE/core-$i.log)"
done

# The peripheries: tunnel mode, each with every replica in --core. Each
# list starts at another replica, so they connect to different ones; when
# theirs goes away they move to the next.
cores_from() {  # the replicas' addresses, comma-separated, starting at $1
  local out="" k
  for k in $(seq 0 $((REPLICAS - 1))); do
    out+="${out:+,}$(replica_address $(((($1 - 1 + k) % REPLICAS) + 1)))"
  done
  echo "$out"
}
# shellcheck disable=SC2317  # called by wait_for
periphery_online() { ctl "$1" peripheries list -n "$2" | grep -q online; }
for i in $(seq 1 "$PERIPHERIES"); do
  first=$((((i - 1) % REPLICAS) + 1))
  launch "periphery-$i" "$BIN/varan-periphery" --core "$(cores_from "$first")" \
    --join-token-file "$STATE/join.token" --name "ha-periphery-$i" \
    --label env=ha-local --tunnel --no-listen --state-dir "$STATE/periphery-$i" \
    --core-ca-hash "$PIN"
  wait_for "periphery-$i" periphery_online "$first" "ha-periphery-$i"
  echo "varan-periphery ha-periphery-$i registered through replica $first (log: $STATE/periphery-$i.log)"
done

ALL_CORES=$(cores_from 1)
ASK=$((REPLICAS >= 2 ? 2 : 1))
# The replica asked sees registrations made through the others within about
# a second; the first command waits for that.
for i in $(seq 1 "$PERIPHERIES"); do
  wait_for "core-$ASK" periphery_online "$ASK" "ha-periphery-$i"
done
echo
ctl "$ASK" peripheries list || true
echo
echo "\$ varanctl --core $(replica_address "$ASK") exec -l env=ha-local -- uname -a"
if ! ctl "$ASK" exec -l env=ha-local -- uname -a; then
  echo "(that failed: replica $ASK cannot run commands on every periphery;" \
    "see $STATE/core-*.log)" >&2
fi
cat <<MSG

Varan runs with $REPLICAS core replicas on one PostgreSQL database. In another terminal, try:

  export VARAN_CORE='$ALL_CORES' VARAN_TOKEN_FILE=$STATE/admin.token VARAN_CA_HASH=$PIN
  $BIN/varanctl peripheries list
  $BIN/varanctl exec -l env=ha-local -- uname -a
  kill \$(cat $PIDS/core-1.pid)    # a replica goes away; its peripheries move on
  $SELF status
  $PG_BIN/psql "\$(cat $STATE/database.url)"    # the shared database

MSG

if [ "$detach" = 1 ]; then
  trap - INT TERM EXIT
  echo "Detached: $SELF stop stops everything."
  exit 0
fi
echo "Press Ctrl-C (or run $SELF stop) to stop everything."

# In the foreground until Ctrl-C, `ha-local.sh stop`, or every daemon has
# exited; a daemon that exits is reported, the others keep running.
waiting=()
for name in $(recorded); do waiting+=("$(pid_of "$name")"); done
while [ "${#waiting[@]}" -gt 0 ]; do
  wait -n "${waiting[@]}" 2>/dev/null || true
  if [ -e "$STATE/stopping" ]; then
    trap - INT TERM EXIT
    echo "Stopped by $SELF stop."
    exit 0
  fi
  still=()
  for name in $(recorded); do
    pid=$(pid_of "$name")
    if alive "$pid"; then
      still+=("$pid")
    elif [[ " ${waiting[*]} " == *" $pid "* ]]; then
      echo "$name (pid $pid) exited; see $STATE/$name.log" >&2
    fi
  done
  waiting=("${still[@]}")
done
echo "Every core and periphery has exited." >&2
exit 1

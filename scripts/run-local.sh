#!/usr/bin/env bash
# `make run`: starts varan-core and one local varan-periphery, runs a first
# command through varanctl, then stays in the foreground until Ctrl-C, which
# stops both cleanly. State lives in .varan/ (tokens, credentials, logs).
#
# Usage: scripts/run-local.sh [BIN_DIR]
# Env:   VARAN_RUN_CORE_PORT (7700), VARAN_RUN_PERIPHERY_PORT (7701)
set -euo pipefail

BIN="${1:-build/bin}"
STATE="${VARAN_RUN_STATE:-.varan}"
CORE_PORT="${VARAN_RUN_CORE_PORT:-7700}"
PERIPHERY_PORT="${VARAN_RUN_PERIPHERY_PORT:-7701}"
NAME="$(hostname -s 2>/dev/null || echo local)"
NAME="${NAME//[^A-Za-z0-9._-]/-}"
CORE="localhost:${CORE_PORT}"

mkdir -p "$STATE"
STATE_ABS="$(cd "$STATE" && pwd)"  # for the hints printed at the end
# Core serves TLS with its built-in cluster CA (created on first start in
# $STATE/core/pki); varanctl checks core against that CA's certificate.
CTL=("$BIN/varanctl" --core "$CORE" --token-file "$STATE/core/admin.token"
  --tls-ca "$STATE/core/pki/ca.crt")

core_pid=""
periphery_pid=""
stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping periphery and core..."
  [ -n "$periphery_pid" ] && kill -TERM "$periphery_pid" 2>/dev/null || true
  [ -n "$core_pid" ] && kill -TERM "$core_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "Stopped."
}
trap 'stop; exit 0' INT TERM
trap 'stop' EXIT

# wait_for NAME PID LOG CHECK...: polls CHECK every 0.1 s for up to 15 s while
# the daemon PID lives; on its death or a timeout, shows LOG and exits 1.
wait_for() {
  local name=$1 pid=$2 log=$3
  shift 3
  for _ in $(seq 1 150); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name failed to start:" >&2
      cat "$log" >&2
      exit 1
    fi
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "$name did not become ready in 15 s:" >&2
  cat "$log" >&2
  exit 1
}
core_ready() {
  [ -s "$STATE/core/admin.token" ] && [ -s "$STATE/core/pki/ca.crt" ] &&
    "${CTL[@]}" peripheries list
}
periphery_online() { "${CTL[@]}" peripheries list -n "$NAME" | grep -q online; }

"$BIN/varan-core" --listen "[::]:${CORE_PORT}" --data-dir "$STATE/core" \
  >"$STATE/core.log" 2>&1 &
core_pid=$!
wait_for varan-core "$core_pid" "$STATE/core.log" core_ready
echo "varan-core is up on [::]:${CORE_PORT}, TLS with its cluster CA (log: $STATE/core.log)"

# The join token core wrote carries its CA's pin: the periphery checks core
# against it on its first connection.
"$BIN/varan-periphery" --core "$CORE" --join-token-file "$STATE/core/join.token" \
  --name "$NAME" --label env=local --listen "[::]:${PERIPHERY_PORT}" \
  --state-dir "$STATE/periphery" >"$STATE/periphery.log" 2>&1 &
periphery_pid=$!
wait_for varan-periphery "$periphery_pid" "$STATE/periphery.log" periphery_online
echo "varan-periphery '$NAME' registered (log: $STATE/periphery.log)"
echo
"${CTL[@]}" peripheries list
echo
echo "\$ varanctl exec -n $NAME -- uname -a"
"${CTL[@]}" exec -n "$NAME" -- uname -a
cat <<MSG

Varan is running. In another terminal, try:

  export VARAN_CORE=$CORE VARAN_TOKEN_FILE=$STATE_ABS/core/admin.token
  export VARAN_TLS_CA=$STATE_ABS/core/pki/ca.crt
  $BIN/varanctl peripheries list
  $BIN/varanctl exec -l env=local -- df -h /
  $BIN/varanctl exec -n $NAME --shell -- 'for i in 1 2 3; do echo tick \$i; sleep 1; done'
  $BIN/varanctl jobs list

Press Ctrl-C to stop core and periphery.
MSG
wait -n "$core_pid" "$periphery_pid" || true
echo "A daemon exited unexpectedly; see $STATE/*.log" >&2
exit 1

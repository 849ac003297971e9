#!/usr/bin/env bash
# How soon a periphery is back with a core restarted after an outage: starts
# core and one dial-mode periphery on loopback (state in a temporary
# directory), then ROUNDS times kills core (-9), waits OUTAGE seconds,
# starts it again and prints the time from that start to the periphery's
# "connected to core at ... again" (core's own start-up included).
#   bench/reconnect.sh [BIN_DIR]      (default build/bin)
#   env: OUTAGE (2 s), ROUNDS (5)
# Only the processes it started are signalled.
set -u
BIN=${1:-build/bin}
D=$(mktemp -d)
PORT=$((20000 + RANDOM % 10000))
trap 'kill $PP $CP 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT
start_core() {
  "$BIN/varan-core" --listen "[::1]:$PORT" --data-dir "$D/core" \
    --heartbeat-interval 1 >>"$D/core.log" 2>&1 &
  CP=$!
}
again() { grep -c "connected to core at .* again" "$D/p.log"; }
start_core
for _ in $(seq 1 100); do [ -s "$D/core/join.token" ] && break; sleep 0.1; done
"$BIN/varan-periphery" --core "[::1]:$PORT" --join-token-file "$D/core/join.token" \
  --listen "[::1]:0" --state-dir "$D/p" --name p1 >"$D/p.log" 2>&1 &
PP=$!
for _ in $(seq 1 100); do grep -q "registered" "$D/p.log" && break; sleep 0.1; done
sleep 2
for round in $(seq 1 "${ROUNDS:-5}"); do
  kill -9 "$CP"
  wait "$CP" 2>/dev/null
  sleep "${OUTAGE:-2}"
  before=$(again)
  t0=$(date +%s.%N)
  start_core
  for _ in $(seq 1 3000); do [ "$(again)" != "$before" ] && break; sleep 0.02; done
  t1=$(date +%s.%N)
  awk -v r="$round" -v o="${OUTAGE:-2}" -v a="$t0" -v b="$t1" \
    'BEGIN { printf "round %d (outage %s s): back after %.2f s\n", r, o, b - a }'
  sleep 2
done

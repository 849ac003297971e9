# A PostgreSQL 15 for bench/run.sh (section 5, several core replicas),
# sourced by it: Debian's postgresql-15 with its defaults, a cluster of its
# own in a directory of its own, listening on 127.0.0.1 at a free port.
#   pg_up DIR   initdb in DIR (new, empty or absent) and start the server;
#               sets PG_URL to a URL of its `postgres` database for the
#               role varan, which may create databases (each benchmark
#               makes new ones)
#   pg_down DIR stop the server started in DIR, if it runs
# As root, PostgreSQL runs as the `postgres` user (else `nobody`):
# PostgreSQL refuses to run as root. The role authenticates with `trust`,
# only on 127.0.0.1 and the socket in DIR: nothing but this machine's own
# benchmark reaches it, and it is gone when the benchmark ends.
# shellcheck shell=bash

PG_BIN="${VARAN_BENCH_PG_BIN:-/usr/lib/postgresql/15/bin}"

_pg_as() {
  local dir=$1
  shift
  if [ "$(id -u)" = 0 ]; then
    local user=postgres
    id -u postgres >/dev/null 2>&1 || user=nobody
    (cd "$dir" && runuser -u "$user" -- "$@")
  else
    (cd "$dir" && "$@")
  fi
}

_pg_port_in_use() {
  if command -v ss >/dev/null; then
    ss -Htln "sport = :$1" | grep -q .
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

pg_up() {
  local dir=$1 port=55532
  for program in initdb pg_ctl; do
    [ -x "$PG_BIN/$program" ] || {
      echo "bench: $PG_BIN/$program not found: install postgresql-15 (scripts/install-deps.sh)" >&2
      return 1
    }
  done
  while _pg_port_in_use "$port"; do port=$((port + 1)); done
  mkdir -p "$dir"
  chmod 0700 "$dir"
  if [ "$(id -u)" = 0 ]; then
    if id -u postgres >/dev/null 2>&1; then
      chown postgres: "$dir"
    else
      chown nobody: "$dir"
    fi
  fi
  _pg_as "$dir" "$PG_BIN/initdb" -D "$dir/data" -U varan --auth=trust \
    -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    return 1
  }
  _pg_as "$dir" tee -a "$dir/data/postgresql.conf" >/dev/null <<CONF
# bench/postgres.sh
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
CONF
  _pg_as "$dir" "$PG_BIN/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" \
    -w -t 60 >/dev/null || {
    cat "$dir/postgres.log" >&2
    return 1
  }
  # shellcheck disable=SC2034  # read by bench/run.sh
  PG_URL="postgresql://varan@127.0.0.1:$port/postgres"
}

pg_down() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  _pg_as "$dir" "$PG_BIN/pg_ctl" stop -D "$dir/data" -m fast -w -t 60 \
    >/dev/null 2>&1 || true
}

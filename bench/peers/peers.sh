# The peers' side of the fan-out benchmark, on loopback only. Source this
# file (bash), then:
#   peers_up DIR N...   (starts; set -e is assumed)
#   peers_down DIR      (stops everything again; call it from a trap)
# DIR must not exist yet; N are the fleet sizes to prepare (e.g. 20 100).
# - a plain user `varan-bench` (created once, password-less, home
#   /var/lib/varan-bench with no rc files, login shell /bin/sh = dash, which
#   reads no rc file for `sh -c`), so the peers are not slowed by this
#   machine's shell set-up;
# - an sshd of its own on 127.0.0.1:<free port>: own config, host key and
#   authorized key, MaxStartups/MaxSessions raised so fan-out is not
#   throttled, UsePAM no, no DNS lookups;
# - DIR/ssh_config with host aliases bench-1..bench-MAX all pointing at it
#   (host key pinned in DIR/known_hosts), and for each N: DIR/peers-N.txt,
#   the peer commands core_bench --peers times (a label, a tab, the argv
#   separated by spaces; pdsh and clush with -S, so that they exit non-zero
#   when a host fails, as ansible does), and DIR/inventory-N for Ansible;
# - DIR/env: the environment the peer commands need (source it).

peers_up() {
  local DIR=$1
  shift
  [ $# -ge 1 ] || { echo "usage: peers_up DIR N..." >&2; return 2; }
  local USER_NAME=varan-bench PORT N i
  local HOME_DIR=/var/lib/varan-bench

  if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir "$HOME_DIR" --shell /bin/sh \
      --comment "Varan benchmark peers (bench/peers)" "$USER_NAME"
  fi
  usermod -p '*' "$USER_NAME"  # no password, but not locked (UsePAM no)
  mkdir -p "$HOME_DIR"
  chown "$USER_NAME:" "$HOME_DIR"
  chmod 700 "$HOME_DIR"
  rm -f "$HOME_DIR/.profile" "$HOME_DIR/.bashrc" "$HOME_DIR/.bash_profile"

  mkdir -m 755 "$DIR"
  DIR=$(cd "$DIR" && pwd)
  ssh-keygen -q -t ed25519 -N '' -C varan-bench-host -f "$DIR/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C varan-bench-client -f "$DIR/id_ed25519"


  PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # sshd reads the authorized keys as the user, who cannot enter DIR if it
  # is below a private directory (mktemp -d): the key goes to its home,
  # one file per run (peers_down removes it).
  mkdir -p -m 700 "$HOME_DIR/.ssh"
  cp "$DIR/id_ed25519.pub" "$HOME_DIR/.ssh/authorized_keys-$PORT"
  chown -R "$USER_NAME:" "$HOME_DIR/.ssh"
  echo "$HOME_DIR/.ssh/authorized_keys-$PORT" > "$DIR/authorized_keys_path"
  cat > "$DIR/sshd_config" <<CFG
ListenAddress 127.0.0.1
Port $PORT
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthorizedKeysFile $HOME_DIR/.ssh/authorized_keys-$PORT
AllowUsers $USER_NAME
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowAgentForwarding no
MaxStartups 1000
MaxSessions 1000
LogLevel ERROR
Subsystem sftp /usr/lib/openssh/sftp-server
CFG
  mkdir -p /run/sshd  # privilege separation directory
  /usr/sbin/sshd -t -f "$DIR/sshd_config"
  # In the foreground (-D) as a child of this shell, so that it and the
  # session processes it reaps are reaped in turn (see peers_down).
  /usr/sbin/sshd -D -f "$DIR/sshd_config" -E "$DIR/sshd.log" &
  PEERS_SSHD_PID=$!
  for _ in $(seq 50); do [ -s "$DIR/sshd.pid" ] && break; sleep 0.1; done
  [ -s "$DIR/sshd.pid" ] || { echo "sshd did not start: $(cat "$DIR/sshd.log")" >&2; return 1; }

  echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$DIR/host_ed25519.pub")" > "$DIR/known_hosts"
  cat > "$DIR/ssh_config" <<CFG
Host bench-*
  HostName 127.0.0.1
  Port $PORT
  User $USER_NAME
  IdentityFile $DIR/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $DIR/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
CFG

  mkdir -p "$DIR/clush" "$DIR/ansible-cp" "$DIR/ansible-tmp"
  # ClusterShell: the default fanout (64) would serialise N = 100.
  cat > "$DIR/clush/clush.conf" <<CFG
[Main]
fanout: 256
connect_timeout: 15
command_timeout: 0
color: never
ssh_options: -F $DIR/ssh_config
CFG
  # Ansible: its defaults (ssh with ControlPersist=60s, no pipelining), only
  # forks raised so that N = 100 runs at once.
  cat > "$DIR/ansible.cfg" <<CFG
[defaults]
forks = 256
host_key_checking = True
interpreter_python = /usr/bin/python3
local_tmp = $DIR/ansible-tmp
retry_files_enabled = False
[ssh_connection]
ssh_common_args = -F $DIR/ssh_config
control_path_dir = $DIR/ansible-cp
CFG
  cat > "$DIR/env" <<CFG
export PDSH_SSH_ARGS='-F $DIR/ssh_config %h'
export PDSH_RCMD_TYPE=ssh
export CLUSTERSHELL_CFGDIR='$DIR/clush'
export ANSIBLE_CONFIG='$DIR/ansible.cfg'
export ANSIBLE_NOCOLOR=1
export ANSIBLE_DEPRECATION_WARNINGS=False
CFG
  for N in "$@"; do
    : > "$DIR/inventory-$N"
    for i in $(seq "$N"); do echo "bench-$i" >> "$DIR/inventory-$N"; done
    {
      printf 'pdsh -R ssh\t/usr/bin/pdsh -S -R ssh -f %s -w bench-[1-%s] true\n' "$N" "$N"
      printf 'clush\t/usr/bin/clush -S -w bench-[1-%s] true\n' "$N"
      printf 'ansible -m command\t/usr/bin/ansible all -i %s/inventory-%s -m command -a true\n' "$DIR" "$N"
    } > "$DIR/peers-$N.txt"
  done
  echo "bench: sshd (pid $(cat "$DIR/sshd.pid")) on 127.0.0.1:$PORT for $USER_NAME" >&2
}

# Stops what peers_up DIR started and removes DIR: Ansible's ControlPersist
# masters (by their sockets in DIR), the session processes of the benchmark
# user (by pid), then the sshd (by the pid this shell started it with).
peers_down() {
  local DIR=$1
  # Called from traps under set -e: nothing here may fail.
  [ -d "$DIR" ] || return 0
  for sock in "$DIR"/ansible-cp/*; do
    [ -S "$sock" ] || continue
    ssh -o ControlPath="$sock" -O exit bench-1 >/dev/null 2>&1 || true
  done
  # Sessions end while sshd still runs, so that it reaps them.
  for pid in $(pgrep -u varan-bench 2>/dev/null || true); do
    kill "$pid" 2>/dev/null || true
  done
  if [ -n "${PEERS_SSHD_PID:-}" ]; then
    for _ in $(seq 50); do
      pgrep -P "$PEERS_SSHD_PID" >/dev/null || break
      sleep 0.1
    done
    kill "$PEERS_SSHD_PID" 2>/dev/null || true
    wait "$PEERS_SSHD_PID" 2>/dev/null || true
    PEERS_SSHD_PID=
  fi
  if [ -s "$DIR/authorized_keys_path" ]; then
    rm -f "$(cat "$DIR/authorized_keys_path")"
  fi
  rm -rf "$DIR"
}

#!/bin/sh
# Installs the peers the fan-out benchmark compares Varan with (Debian
# packages): OpenSSH's server, pdsh, ClusterShell and Ansible. Idempotent.
# Installing openssh-server would start and enable the system's sshd; a
# temporary policy-rc.d forbids that (the harness starts an sshd of its
# own on loopback, see peers.sh), and any system sshd it started anyway
# is stopped again.
set -eu
PKGS="openssh-server openssh-client pdsh clustershell ansible"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  own_policy=1
fi
cleanup() { [ "$own_policy" -eq 0 ] || $SUDO rm -f "$policy"; }
trap cleanup EXIT
echo "bench: installing$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# No system sshd may be left running or enabled by this.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
fi
if [ -f /run/sshd.pid ]; then
  $SUDO kill "$(cat /run/sshd.pid)" 2>/dev/null || true
fi

#!/usr/bin/env bash
# `cmake --install` lays out Varan as the README says, and its systemd units
# pass `systemd-analyze verify` (any warning fails, as an unknown key is only
# a warning to systemd) and stay under an exposure budget in
# `systemd-analyze security --offline`. systemd is a Debian package
# (scripts/install-deps.sh installs it); its tools work without systemd
# running as PID 1.
# Usage: systemd-test.sh BUILD_DIR
set -euo pipefail
build=$1
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
DESTDIR=$stage cmake --install "$build" >"$stage.log" 2>&1 || { cat "$stage.log"; rm -f "$stage.log"; exit 1; }
rm -f "$stage.log"

# The layout.
for f in "$prefix/bin/varan-core" "$prefix/bin/varan-periphery" "$prefix/bin/varanctl"; do
  [ -x "$stage$f" ] && pass "installed $f" || fail "$f is not installed"
done
for f in /etc/varan/core.toml /etc/varan/periphery.toml \
         "$prefix/lib/systemd/system/varan-core.service" \
         "$prefix/lib/systemd/system/varan-periphery.service" \
         "$prefix/share/varan/systemd/varan-periphery-restricted.conf"; do
  [ -f "$stage$f" ] && pass "installed $f" || fail "$f is not installed"
done
[ -d "$stage/var/lib/varan" ] && pass "installed /var/lib/varan/" || fail "/var/lib/varan/ is not created"
units=$stage$prefix/lib/systemd/system
for unit in varan-core varan-periphery; do
  grep -qx "ExecStart=$prefix/bin/$unit --config=/etc/varan/${unit#varan-}.toml" "$units/$unit.service" \
    && pass "$unit.service starts $prefix/bin/$unit" \
    || fail "$unit.service: ExecStart is $(grep ^ExecStart= "$units/$unit.service")"
done

# Installing again keeps a configuration the administrator edited.
echo "# edited" >>"$stage/etc/varan/core.toml"
DESTDIR=$stage cmake --install "$build" >/dev/null
grep -q "^# edited" "$stage/etc/varan/core.toml" && pass "an edited config is kept" || fail "reinstalling overwrote /etc/varan/core.toml"

# systemd-analyze verify on copies whose ExecStart names the staged binary
# (the only change), with the restricted drop-in beside one of them.
verify=$stage/verify
mkdir -p "$verify/varan-periphery-restricted.service.d"
for unit in varan-core varan-periphery; do
  sed "s|^ExecStart=$prefix/|ExecStart=$stage$prefix/|" "$units/$unit.service" >"$verify/$unit.service"
done
cp "$verify/varan-periphery.service" "$verify/varan-periphery-restricted.service"
cp "$stage$prefix/share/varan/systemd/varan-periphery-restricted.conf" "$verify/varan-periphery-restricted.service.d/"
for unit in varan-core varan-periphery varan-periphery-restricted; do
  if out=$(systemd-analyze verify "$verify/$unit.service" 2>&1) && [ -z "$out" ]; then
    pass "systemd-analyze verify $unit.service"
  else
    fail "systemd-analyze verify $unit.service: ${out:-exit status}"
  fi
done

# Exposure (0 = fully sandboxed, 10 = unrestricted). The periphery unit is
# unrestricted by design (README "Deploying"); its drop-in is not.
for check in varan-core:20 varan-periphery-restricted:30; do
  unit=${check%%:*} threshold=${check##*:}
  line=$(systemd-analyze security --offline=yes "$verify/$unit.service" 2>&1 | grep "Overall exposure" || true)
  if systemd-analyze security --offline=yes --threshold="$threshold" "$verify/$unit.service" >/dev/null 2>&1; then
    pass "$unit.service exposure at most $((threshold / 10)).$((threshold % 10)): $line"
  else
    fail "$unit.service exposure above $((threshold / 10)).$((threshold % 10)): $line"
  fi
done

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all systemd and install checks passed"

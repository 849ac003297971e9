#!/usr/bin/env bash
# Installs the Debian packages Varan needs to build and test, if any are
# missing. Non-interactive; needs root (or sudo) only when something is
# missing. Usage: scripts/install-deps.sh
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libgtest-dev libgmock-dev
  libcli11-dev libtomlplusplus-dev libsqlite3-dev libssl-dev openssl
  grpc-proto iproute2 procps
  python3-grpcio python3-protobuf
)
# Node.js and npm run the Node client example; a node installed outside apt
# (nvm, NodeSource) is used as it is, Debian's packages are the fallback.
command -v node >/dev/null || PACKAGES+=(nodejs)
command -v npm >/dev/null || PACKAGES+=(npm)
# systemd-analyze checks the systemd units (tests/deploy/systemd-test.sh).
PACKAGES+=(systemd)
# tinyproxy is the HTTP CONNECT proxy between a periphery and core in
# tests/integration/network_test.cc.
PACKAGES+=(tinyproxy)
# PostgreSQL 15 and libpq: the tests start a real server of their own
# (tests/postgres/); the PostgreSQL store (#19) links libpq.
PACKAGES+=(postgresql-15 libpq-dev)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "Installing missing packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    SUDO="sudo"
  else
    echo "error: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

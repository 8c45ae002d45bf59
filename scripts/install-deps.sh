#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the benchmarks need.
# Idempotent: packages already installed are skipped, and apt is not touched at all when
# nothing is missing. Run as root on Debian bookworm.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # libraries (see docs/ARCHITECTURE.md, "Dependencies")
  libasio-dev libfmt-dev libsimdjson-dev libsqlite3-dev libmbedtls-dev libyaml-cpp-dev
  doctest-dev node-llhttp libexpat1-dev libpaho-mqtt-dev libpaho-mqttpp-dev libpq-dev zlib1g-dev tzdata
  libssh2-1-dev
  # tools and peers used by tests and benchmarks
  sqlite3 nats-server libnats-dev redis-server nginx wrk openssl mosquitto mosquitto-clients
  postgresql openssh-server doxygen
  # sanitizer and fuzzer runtimes
  clang libclang-rt-14-dev
  # the Python bindings: module, tests and stub checks
  python3-dev pybind11-dev python3-pytest mypy
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The peers are started by the tests and benchmarks themselves, on loopback; the distro
# services are not needed.
for svc in redis-server nats-server mosquitto postgresql ssh; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
done

#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite with ctest.
#   scripts/test.sh            release build in build/
#   scripts/test.sh --asan     the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   scripts/test.sh --tsan     the same under ThreadSanitizer
# Set CIVICBUS_SOAK=1 to include the long soak tests.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=release
case "${1:-}" in
  --asan) preset=asan ;;
  --tsan) preset=tsan ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--asan|--tsan]" >&2; exit 2 ;;
esac
scripts/install-deps.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j"$(nproc)"
ctest --preset "$preset" -j"$(nproc)"

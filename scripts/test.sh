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
build_dir=build
[ "$preset" = release ] || build_dir="build-$preset"
# The public conformance suites' pass counts (the ctest entries below fail on any regression).
"$build_dir/tests/core_tests" --test-case='json-schema-test-suite*' 2>&1 |
  grep -E '^json-schema-test-suite .*passed$' || true
ctest --preset "$preset" -j"$(nproc)"

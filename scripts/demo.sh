#!/usr/bin/env bash
# Installs what is missing, builds, and runs the demo node on embedded defaults (SQLite in a
# temp dir, in-process transport): sample topics, schemas, consumers and traffic, and an API
# gateway in front of it that the demo calls (printing the curl commands). Pass --serve to keep
# the gateway up afterwards and try them; other options go to `civicbus demo` as well.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target civicbus_cli
exec build/civicbus demo "$@"

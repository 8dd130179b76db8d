#!/bin/sh
# Runs the pull benchmark (bench/README.md) from the repository root; arguments go to it,
# e.g. bench/pull.sh -n 5. Needs root.
set -eu
cd "$(dirname "$0")/.."
exec go run ./bench/pull "$@"

#!/bin/sh
# The project's test command: fetch (or reuse) the end-to-end artifacts in
# target/e2e/, build (or reuse) the patched QEMU of full-system mode in
# target/qemu-sriov/, then run every test of the workspace, the QEMU guests included.
set -eu
cd "$(dirname "$0")/.."
python3 scripts/fetch-e2e.py
python3 scripts/build-qemu-sriov.py
exec cargo test --workspace "$@"

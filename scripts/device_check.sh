#!/usr/bin/env bash
# The one command for a lent GPU machine (bare, no network, no PyAV, the machine's own python3):
#   bash scripts/device_check.sh [gpu_check.py options, e.g. --device cpu]
# from a plain copy of the tree with the kit (.device/, made here first by
# `python scripts/device_kit.py`) beside it. Installs the kit's wheels into a temporary folder
# and its weights into a temporary model cache, offline, then runs scripts/gpu_check.py, which
# writes its table, JSON rows and log under $OUT (default ./output/device-check) as it goes.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kit=${RIFE_DEVICE_KIT:-$root/.device}
py=${PYTHON:-python3}
out=${OUT:-$root/output/device-check}
if [ ! -f "$kit/manifest.json" ]; then
    echo "device_check: no kit in $kit: run python scripts/device_kit.py first, and carry .device" >&2
    exit 2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/rife-device.XXXXXX")
trap 'rm -rf "$work"' EXIT
links=(--find-links "$kit/wheels")
[ -d "$kit-host/wheels" ] && links+=(--find-links "$kit-host/wheels")
# Project names from the wheels' file names (name-version-tags.whl).
names=$(cd "$kit/wheels" && ls -- *.whl | sed 's/-.*//' | sort -u)
# shellcheck disable=SC2086
"$py" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
    --disable-pip-version-check --target "$work/site" "${links[@]}" $names || exit 2
"$py" "$root/scripts/device_kit.py" --unpack "$kit" "$work/rife-home" || exit 2
export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
export RIFE_HOME="$work/rife-home" RIFE_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p "$out"
# The checks' own log (tracebacks of a failed row) comes back beside the table and the JSON.
"$py" "$root/scripts/gpu_check.py" --out "$out" "$@" 2> >(tee "$out/gpu_check.log" >&2)

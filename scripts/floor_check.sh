#!/usr/bin/env bash
# The torch floor is true: a fresh venv with exactly pyproject's oldest torch (and the newest of
# everything else pip picks beside it), the project installed, the fast tests run.
#   scripts/floor_check.sh [TORCH_VERSION] [pytest args...]   (default: pyproject's torch>= floor)
# Uses the CPU wheel index when download.pytorch.org answers, else PyPI (several GB of CUDA
# libraries). The venv is made under ${FLOOR_VENV:-/tmp/rife-floor-venv} and kept for reruns.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
floor=$(sed -n 's/^ *"torch>=\([0-9.]*\)".*/\1/p' "$root/pyproject.toml")
version=${1:-$floor}
shift || true
venv=${FLOOR_VENV:-/tmp/rife-floor-venv}
python3 -m venv --clear "$venv"
pip=("$venv/bin/python" -m pip install -q)
cpu_index=https://download.pytorch.org/whl/cpu
if curl -fsS --max-time 10 -o /dev/null "$cpu_index/torch/"; then
    "${pip[@]}" --index-url "$cpu_index" "torch==$version"
else
    echo "floor_check: $cpu_index does not answer; taking torch $version from PyPI" >&2
    "${pip[@]}" "torch==$version"
fi
# --no-build-isolation not needed; the project must install beside that torch without moving it.
"${pip[@]}" -e "$root[test]"
got=$("$venv/bin/python" -c 'import torch, numpy; print(torch.__version__, numpy.__version__)')
echo "floor_check: torch, numpy = $got"
case "$got" in "$version"*) ;; *) echo "floor_check: pip replaced torch $version" >&2; exit 1 ;; esac
cd "$root"
"$venv/bin/python" -m pytest -q -x -m "not slow" -p no:cacheprovider "$@"

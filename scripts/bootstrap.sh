#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment. Idempotent: a stamp of the dependency files
# skips the install when nothing changed. torch is installed first, pinned to the CPU build on this
# machine's disk, so stable-baselines3 does not pull several GB of CUDA packages.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${USDCOP_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[bootstrap] creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.usdcop-installed"
want="$(cat "$root/pyproject.toml" "$root/constraints.txt" 2>/dev/null | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[bootstrap] installing dependencies into $venv (first run takes a few minutes)"
"$venv/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
"$venv/bin/python" -m pip install --quiet "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
"$venv/bin/python" -c "import torch" || { echo "[bootstrap] torch failed to install" >&2; exit 1; }
"$venv/bin/python" -m pip install --quiet -c "$root/constraints.txt" -e "$root[dev]" 2>&1 | grep -v "is ignored" || true
"$venv/bin/python" -c "import usdcop_assets, dagster, stable_baselines3, moto" || { echo "[bootstrap] install failed" >&2; exit 1; }
echo "$want" > "$stamp"

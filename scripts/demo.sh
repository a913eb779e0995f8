#!/usr/bin/env bash
# Set-up command 1: install, then run the platform's main job (`usdcop run`) on the embedded default (local
# Parquet lake, SQLite warehouse, SQLite Dagster instance under ./.usdcop): synthetic bars and macro days for
# enough recent history for two monthly walk-forward folds, L0-L4, the PPO agent of each fold (a small
# demonstration budget), actions, paper ledger, backtests and l6/performance with its HTML report; then a
# summary. No key, no server, no network. Extra arguments go to `usdcop run` (e.g. --timesteps 200000).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
export USDCOP_HOME="${USDCOP_HOME:-$root/.usdcop}"
exec "$root/.venv/bin/usdcop" run "$@"

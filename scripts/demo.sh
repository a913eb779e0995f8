#!/usr/bin/env bash
# Set-up command 1: install, then materialize every built layer over the last five complete sessions
# on the embedded default (local Parquet lake, SQLite warehouse, SQLite Dagster instance under
# ./.usdcop). No key, no server, no network. Extra arguments go to `usdcop backfill`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
export USDCOP_HOME="${USDCOP_HOME:-$root/.usdcop}"
"$root/.venv/bin/usdcop" backfill "$@"
cat <<MSG

Done. Everything is under $USDCOP_HOME (lake/, warehouse.sqlite, dagster_home/).
  Dagster UI (runs, lineage, partitions, checks):  .venv/bin/usdcop ui      then open http://127.0.0.1:3000
  Configuration and store health:                 .venv/bin/usdcop doctor
  Dashboard:                                      not built yet (streamlit_app/README.md)
MSG

#!/usr/bin/env bash
# Set-up command 2: install, make sure PostgreSQL and Chromium are there, run the test suite (real PostgreSQL, a
# loopback S3 server, SQLite). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
bash "$root/scripts/pg-up.sh"
bash "$root/scripts/browser-up.sh"  # headless Chromium for the dashboard end-to-end test
cd "$root"
exec "$root/.venv/bin/python" -m pytest -p no:cacheprovider "$@"

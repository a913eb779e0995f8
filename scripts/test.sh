#!/usr/bin/env bash
# Set-up command 2: install, make sure PostgreSQL is up, run the test suite (real PostgreSQL, a
# loopback S3 server, SQLite). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
bash "$root/scripts/pg-up.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest -p no:cacheprovider "$@"

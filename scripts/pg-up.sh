#!/usr/bin/env bash
# Start the machine's PostgreSQL cluster when it is not accepting connections (tests need it).
set -uo pipefail
if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  echo "[pg-up] starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && exit 0
    sleep 1
  done
fi
echo "[pg-up] PostgreSQL is not reachable at 127.0.0.1:5432 (set USDCOP_TEST_PG to another server)" >&2
exit 1

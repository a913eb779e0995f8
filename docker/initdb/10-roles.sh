#!/bin/sh
# /docker-entrypoint-initdb.d/10-roles.sh of timescaledb and dagster-postgres: run by the image once, on
# an empty data directory, as POSTGRES_USER (after the TimescaleDB image's own extension setup). To
# rotate the role passwords on a running database, run it again with the new values:
#   docker compose -f docker/compose.yaml exec timescaledb sh /docker-entrypoint-initdb.d/10-roles.sh
set -eu
: "${APP_DB_WRITER_USER:?}" "${APP_DB_WRITER_PASSWORD:?}" "${APP_DB_READER_USER:?}" "${APP_DB_READER_PASSWORD:?}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v writer_user="$APP_DB_WRITER_USER" -v writer_password="$APP_DB_WRITER_PASSWORD" \
  -v reader_user="$APP_DB_READER_USER" -v reader_password="$APP_DB_READER_PASSWORD" \
  -f /usdcop-initdb/roles.sql

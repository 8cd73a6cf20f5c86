#!/usr/bin/env bash
# Finds a PostgreSQL server, starting the local cluster if it is installed
# but stopped, and makes sure the named database exists.
#
#   scripts/postgres.sh URL    exits 0 when URL's database answers, 1 (with
#                              a message saying what to do) when it cannot.
set -euo pipefail

url=${1:?usage: scripts/postgres.sh postgres://user@host:port/db}
source "$(dirname "$0")/lib.sh"

answers() { psql "$url" -XAtqc 'SELECT 1' >/dev/null 2>&1; }

if ! command -v psql >/dev/null 2>&1; then
  echo "error: psql (PostgreSQL client) is not installed. Install PostgreSQL 15 or later (Debian: apt-get install postgresql), or set the URL to a server you have." >&2
  exit 1
fi

if answers; then exit 0; fi

# The server may be up with the database missing: create it.
db=$(sed -E 's#^[a-z]+://[^/]*/([^?]*).*#\1#' <<<"$url")
server_url=$(sed -E 's#^([a-z]+://[^/]*/)[^?]*(.*)$#\1postgres\2#' <<<"$url")
if psql "$server_url" -XAtqc 'SELECT 1' >/dev/null 2>&1; then
  psql "$server_url" -Xqc "CREATE DATABASE \"$db\"" >/dev/null
  answers && exit 0
fi

# Nothing answers: start the local cluster if this machine has one.
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting the local PostgreSQL $version cluster" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do
    if psql "$server_url" -XAtqc 'SELECT 1' >/dev/null 2>&1; then break; fi
    sleep 1
  done
  if ! answers && psql "$server_url" -XAtqc 'SELECT 1' >/dev/null 2>&1; then
    psql "$server_url" -Xqc "CREATE DATABASE \"$db\"" >/dev/null || true
  fi
  answers && exit 0
fi

echo "error: PostgreSQL does not answer at $(redact_url "$url")." >&2
echo "  Start a server (Debian: apt-get install postgresql; pg_ctlcluster 15 main start) or point the URL at one." >&2
exit 1

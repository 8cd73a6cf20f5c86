#!/usr/bin/env bash
# make run: migrates, creates a demo device and users, starts
# storage-backend and proxy, and prints the curl lines to try them. With
# DATABASE_URL unset both keep their data in the embedded store under
# .run/data; with DATABASE_URL set (make run-postgres sets it) they use
# PostgreSQL, started here if it is installed but stopped.
# Ctrl-C stops both. Run it again and the same tokens still work.
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY_ADDR=${PROXY_ADDR:-127.0.0.1:8080}
BACKEND_ADDR=${BACKEND_ADDR:-127.0.0.1:9000}
METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:9090}
mkdir -p .run

if [ -n "${DATABASE_URL:-}" ]; then
  scripts/postgres.sh "$DATABASE_URL"
  store="PostgreSQL ($DATABASE_URL)"
else
  export DATA_DIR=${DATA_DIR:-.run/data}
  store="the embedded store in $DATA_DIR"
fi

bin/proxy migrate up >/dev/null
bin/storage-backend migrate up >/dev/null

add_user() { # device username password [--admin]
  local out
  if ! out=$(printf '%s\n' "$3" | bin/proxy user add --device "$1" --username "$2" ${4:-} 2>&1); then
    grep -q 'already exists' <<<"$out" || { echo "$out" >&2; exit 1; }
  fi
}
add_user VR-DEVICE-002 1111 1111
add_user VR-DEVICE-002 admin 9999 --admin

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT
trap 'exit 0' INT TERM

LISTEN_ADDR=$BACKEND_ADDR bin/storage-backend 2>>.run/storage-backend.log &
pids+=($!)
LISTEN_ADDR=$PROXY_ADDR UPSTREAM_URL=http://$BACKEND_ADDR METRICS_ADDR=$METRICS_ADDR bin/proxy 2>>.run/proxy.log &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -fs "http://$PROXY_ADDR/readyz" >/dev/null 2>&1 && curl -fs "http://$BACKEND_ADDR/readyz" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "${pids[@]}" 2>/dev/null; then
    echo "a program exited; see .run/proxy.log and .run/storage-backend.log" >&2
    tail -n 5 .run/proxy.log .run/storage-backend.log >&2
    exit 1
  fi
  sleep 0.1
done

cat <<EOT

authsidecar is running on $store.
  proxy            http://$PROXY_ADDR   (logs: .run/proxy.log)
  storage-backend  http://$BACKEND_ADDR   (loopback only; logs: .run/storage-backend.log)
  metrics          http://$METRICS_ADDR/metrics
  demo user        device VR-DEVICE-002, username 1111, PIN 1111 (admin: username admin, PIN 9999)

Try it in another terminal:

  TOKEN=\$(curl -s -X POST http://$PROXY_ADDR/api/auth/login -H 'Content-Type: application/json' \\
    -d '{"deviceId":"VR-DEVICE-002","username":"1111","password":"1111"}' | sed -E 's/.*"token":"([^"]+)".*/\\1/')

  curl -i -X POST http://$PROXY_ADDR/api/storage -H "Authorization: Bearer \$TOKEN" \\
    -H 'Content-Type: application/json' -d '{"key":"test-123","data":{"score":42}}'

Stop with Ctrl-C and run 'make run' again: the same \$TOKEN still works.

EOT
wait -n "${pids[@]}"
echo "a program exited; see .run/*.log" >&2
exit 1

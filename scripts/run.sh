#!/usr/bin/env bash
# make run: migrates, creates a demo device and users, starts
# storage-backend and proxy, and prints the curl lines to try them. With
# DATABASE_URL unset both keep their data in the embedded store under
# .run/data; with DATABASE_URL set (make run-postgres sets it) they use
# PostgreSQL, started here if it is installed but stopped.
# Ctrl-C stops both. Run it again and the same tokens still work.
# make restart-proxy (SIGUSR1 to this script) restarts only the proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

PROXY_ADDR=${PROXY_ADDR:-127.0.0.1:8080}
BACKEND_ADDR=${BACKEND_ADDR:-127.0.0.1:9000}
METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:9464}
mkdir -p .run

# The ports first: with one taken (a make run already up, say), the
# readiness check below would be answered by whoever holds it, and the
# program that could not listen would fail after the banner.
port_taken() { # host:port; an empty host is this machine
  local host=${1%:*} port=${1##*:}
  (exec 3<>"/dev/tcp/${host:-127.0.0.1}/$port") 2>/dev/null
}
for pair in "PROXY_ADDR=$PROXY_ADDR" "BACKEND_ADDR=$BACKEND_ADDR" "METRICS_ADDR=$METRICS_ADDR"; do
  if port_taken "${pair#*=}"; then
    echo "error: ${pair#*=} (${pair%%=*}) is already in use, by another 'make run' or another program." >&2
    echo "  Stop it, or choose other addresses: PROXY_ADDR=127.0.0.1:8081 BACKEND_ADDR=127.0.0.1:9001 METRICS_ADDR=127.0.0.1:9465 make run" >&2
    exit 1
  fi
done

if [ -n "${DATABASE_URL:-}" ]; then
  scripts/postgres.sh "$DATABASE_URL"
  shown=$(redact_url "$DATABASE_URL")
  store="PostgreSQL ($shown)"
  if [ "$shown" = "$DATABASE_URL" ]; then
    commands_env="DATABASE_URL='$DATABASE_URL'"
  else
    commands_env="DATABASE_URL='<the same URL>'" # never print the password
  fi
else
  export DATA_DIR=${DATA_DIR:-.run/data}
  store="the embedded store in $DATA_DIR"
  commands_env="DATA_DIR=$DATA_DIR"
fi

# quiet runs a command, showing its output only if it fails.
quiet() {
  local out
  if ! out=$("$@" 2>&1); then
    echo "$out" >&2
    exit 1
  fi
}
quiet bin/proxy migrate up
quiet bin/storage-backend migrate up

add_user() { # device username password [--admin]
  local out
  if ! out=$(printf '%s\n' "$3" | bin/proxy user add --device "$1" --username "$2" ${4:-} 2>&1); then
    grep -q 'already exists' <<<"$out" || { echo "$out" >&2; exit 1; }
  fi
}
add_user VR-DEVICE-002 1111 1111
add_user VR-DEVICE-002 admin 9999 --admin

# Each program logs JSON lines to its file under .run; the line of a fatal
# error (such as an address in use), and anything it writes that is not
# JSON, also come to this terminal, so that nobody has to look for them.
# These readers ignore Ctrl-C: they end when their program closes its
# stderr, so that a program draining after Ctrl-C can still log (a Go
# program whose stderr pipe is gone is killed by SIGPIPE).
logged() { # name: stdin to .run/name.log, and its fatal and non-JSON lines to stderr
  trap '' INT
  tee -a ".run/$1.log" | grep --line-buffered -e '^[^{]' -e '"level":"fatal"' >&2 || true
}
backend_pid='' proxy_pid=''
start_backend() {
  LISTEN_ADDR=$BACKEND_ADDR bin/storage-backend 2> >(logged storage-backend) &
  backend_pid=$!
}
start_proxy() {
  LISTEN_ADDR=$PROXY_ADDR UPSTREAM_URL=http://$BACKEND_ADDR METRICS_ADDR=$METRICS_ADDR bin/proxy 2> >(logged proxy) &
  proxy_pid=$!
}

stop() {
  kill -TERM $proxy_pid $backend_pid 2>/dev/null || true
  wait 2>/dev/null || true
  # Only our own: another make run (on other ports) may have written it.
  [ "$(cat .run/run.pid 2>/dev/null)" != $$ ] || rm -f .run/run.pid
}
trap stop EXIT
trap 'exit 0' INT TERM

# wait_ready waits for /readyz of the given addresses, as long as the
# programs run.
wait_ready() {
  for _ in $(seq 1 100); do
    local ready=1 addr
    for addr in "$@"; do
      curl -fs "http://$addr/readyz" >/dev/null 2>&1 || ready=0
    done
    [ "$ready" = 1 ] && return 0
    local pid
    for pid in $proxy_pid $backend_pid; do # one at a time: kill succeeds if any is alive
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "a program exited (its error is above); logs: .run/proxy.log, .run/storage-backend.log" >&2
        exit 1
      fi
    done
    sleep 0.1
  done
  echo "not ready after 10s; see .run/proxy.log and .run/storage-backend.log" >&2
  exit 1
}

start_backend
start_proxy
wait_ready "$PROXY_ADDR" "$BACKEND_ADDR"
restart=0
trap 'restart=1' USR1
echo $$ >.run/run.pid

P=http://$PROXY_ADDR
cat <<EOT

authsidecar is running on $store.
  proxy            $P   (logs: .run/proxy.log)
  storage-backend  http://$BACKEND_ADDR   (loopback only; logs: .run/storage-backend.log)
  metrics          http://$METRICS_ADDR/metrics
  demo users       device VR-DEVICE-002: username 1111, PIN 1111; admin: username admin, PIN 9999

Try it in another terminal (the README's "Try it" goes on with refresh, logout and the admin):

  TOKEN=\$(curl -sS -X POST $P/api/auth/login -H 'Content-Type: application/json' \\
    -d '{"deviceId":"VR-DEVICE-002","username":"1111","password":"1111"}' | sed -nE 's/.*"token":"([^"]+)".*/\\1/p')
  echo "\${TOKEN:-login failed: run the curl command alone to see the answer}"

  curl -i -X POST $P/api/storage -H "Authorization: Bearer \$TOKEN" \\
    -H 'Content-Type: application/json' -d '{"key":"test-123","data":{"score":42}}'

The commands work on this store with its settings: $commands_env bin/proxy user list
Restart only the proxy with 'make restart-proxy', or stop both with Ctrl-C and
run 'make run' again: the same \$TOKEN still works.

EOT

# Wait for a program to exit, or for make restart-proxy's SIGUSR1 (which
# ends the wait early).
while :; do
  status=0
  wait -n $proxy_pid $backend_pid || status=$?
  if [ "$restart" = 1 ]; then
    restart=0
    kill -TERM $proxy_pid 2>/dev/null || true
    wait $proxy_pid 2>/dev/null || true
    start_proxy
    wait_ready "$PROXY_ADDR"
    echo "proxy restarted (pid $proxy_pid)"
    continue
  fi
  echo "a program exited with status $status (its error is above); logs: .run/proxy.log, .run/storage-backend.log" >&2
  exit 1
done

#!/usr/bin/env bash
# Makes sure the tools the scale and fault tests run are installed:
# PgBouncer (the tests start their own, in transaction mode, in front of
# the test server). On Debian, run as root, it installs what is missing
# with apt-get; otherwise it fails naming the package to install.
#
#   scripts/scale-tools.sh           for make test: pgbouncer
#   scripts/scale-tools.sh chaos     for make chaos: also initdb and pg_ctl
#                                    (the suite runs a PostgreSQL of its own)
set -euo pipefail

need_pgbouncer() {
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]
}

pg_bindir() {
  # The newest installed server's programs (Debian keeps them off PATH).
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

missing=()
need_pgbouncer || missing+=(pgbouncer)
if [ "${1:-}" = chaos ]; then
  dir=$(pg_bindir || true)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ] || [ ! -x "$dir/pg_ctl" ]; then
    missing+=(postgresql)
  fi
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The package may have started its own PgBouncer service; the tests
  # start theirs and need none running.
  if [[ " ${missing[*]} " == *" pgbouncer "* ]] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now pgbouncer >/dev/null 2>&1 || true
  fi
  exit 0
fi

echo "error: the scale and fault tests need: ${missing[*]}." >&2
echo "  Install it (Debian: apt-get install ${missing[*]}), or run this as root on Debian to have it installed." >&2
exit 1

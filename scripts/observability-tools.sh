#!/usr/bin/env bash
# Makes sure the tools the observability tests run are installed: promtool
# (Debian package "prometheus"), which checks and unit-tests the alert
# rules in deploy/prometheus.
#
#   scripts/observability-tools.sh    exits 0 when promtool runs; installs
#                                     it as root on Debian; otherwise exits
#                                     1 naming the package to install.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then exit 0; fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing promtool (Debian package prometheus)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # The package would start a Prometheus server where an init system runs
  # one; the tests need only its promtool.
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  command -v promtool >/dev/null 2>&1 && exit 0
fi

echo "error: promtool is not installed. Install the package that provides it (Debian: apt-get install prometheus)," >&2
echo "  or put a promtool from a Prometheus release on PATH." >&2
exit 1

#!/usr/bin/env bash
# Makes sure the browser that the approval page's tests drive is installed:
# Chromium, run headless by the tests themselves (chromedp).
#
#   scripts/browser-tools.sh    exits 0 when chromium is there, installing the
#                               Debian package chromium first when run as
#                               root on a machine with apt-get; 1 (naming the
#                               package) otherwise.
set -euo pipefail

have() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

if ! have && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the approval page's browser tests" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! have; then
  echo "error: the approval page's browser tests need Chromium; install the Debian package chromium (apt-get install chromium, as root)." >&2
  exit 1
fi

#!/usr/bin/env bash
# Makes sure the two ingresses that the end-to-end tests run in front of the
# proxy are installed: nginx with its auth_request module, and Caddy.
#
#   scripts/ingress-tools.sh    exits 0 when both are there, installing the
#                               Debian packages nginx-light and caddy first
#                               when run as root on a machine with apt-get;
#                               1 (saying which package is missing) otherwise.
#
# The tests start their own nginx and Caddy on free ports; an nginx that the
# package starts on port 80 is neither used nor disturbed.
set -euo pipefail

missing() {
  local pkgs=()
  command -v nginx >/dev/null 2>&1 || pkgs+=(nginx-light)
  command -v caddy >/dev/null 2>&1 || pkgs+=(caddy)
  echo "${pkgs[@]}"
}

pkgs=$(missing)
if [ -n "$pkgs" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing $pkgs for the ingress tests" >&2
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
  pkgs=$(missing)
fi
if [ -n "$pkgs" ]; then
  echo "error: the ingress tests need nginx and caddy; install the Debian package(s): $pkgs (apt-get install $pkgs, as root)." >&2
  exit 1
fi

# auth_request is what the nginx example rests on: Debian's nginx packages
# have it, a build from elsewhere may not.
if ! nginx -V 2>&1 | grep -q -- '--with-http_auth_request_module'; then
  echo "error: this nginx ($(command -v nginx)) has no auth_request module; install the Debian package nginx-light (or nginx-full)." >&2
  exit 1
fi

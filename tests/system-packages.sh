#!/bin/sh
# The Debian packages the test suite drives: nginx (the offload tests), curl (a
# real client of the server tests) and Chromium with its WebDriver (the example
# app's browser test). Installed when
# this runs as root on Debian; elsewhere one line says what to install, and the
# tests that need a missing one fail saying the same.
set -eu
missing=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -x /usr/bin/chromedriver ] || missing="$missing chromium-driver"
[ -n "$missing" ] || exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing the Debian packages the tests need:$missing" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
    echo "The tests need these Debian packages, not installed here:$missing." \
        "Install them (as root: apt-get install$missing), or their equivalents" \
        "(nginx, curl, Chromium and its chromedriver), then run the tests again." >&2
fi

#!/bin/sh
# Runs promtool for the Prometheus rule tests: `promtool.sh check|test FILE`.
# A missing promtool is a failure, not a skip: CI installs it with scripts/install-deps.
set -eu
if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool is not installed: run scripts/install-deps (Debian package prometheus)" >&2
  exit 1
fi
exec promtool "$1" rules "$2"

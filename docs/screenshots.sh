#!/usr/bin/env bash
# Refreshes the README's screenshots (docs/screenshots/*.png) from the real navigator window:
# a fresh demo fleet, the app under Xvfb walking through the main procedures (`--tour`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v xvfb-run >/dev/null; then
  echo "installing xvfb (Debian package) for a virtual display…"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xauth >/dev/null
fi
cargo build --release -p navigator -p hvmsim -p lparmover
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
# A manager data directory of its own: the history shows this tour's moves only.
LPARMOVER_DATA="$workdir/data" xvfb-run -a -s "-screen 0 1400x900x24" \
  target/release/navigator --workdir "$workdir" --tour docs/screenshots
ls -l docs/screenshots

#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image: the course's
# locked environment (uv.lock), and bubblewrap for the sandbox where the image can install it.
set -euo pipefail
cd /autograder/source

if ! command -v python3 >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
fi
if ! command -v bwrap >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } \
    || echo "setup.sh: bubblewrap could not be installed; workers run under resource limits as nobody" >&2
fi
if ! command -v uv >/dev/null; then
  python3 -m pip install -q uv 2>/dev/null || python3 -m pip install -q --break-system-packages uv
fi
uv sync --locked --no-dev --no-install-project
echo "setup.sh: the course's environment is ready in /autograder/source/.venv"

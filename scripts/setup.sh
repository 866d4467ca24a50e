#!/usr/bin/env bash
# Creates ./.venv with the engine installed (editable). Sourced by example.sh and test.sh.
# EXTRAS: pip extras to add, e.g. EXTRAS=test. Uses constraints.txt: the versions the suite runs with.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: Python 3.10 or newer is needed as '$PYTHON' (set PYTHON=/path/to/python3)" >&2
  exit 1
fi

# cairosvg (tests) needs the cairo C library; install it with the system's package manager if missing.
if [[ "${EXTRAS:-}" == *test* ]] && ! ldconfig -p 2>/dev/null | grep -q 'libcairo\.so\.2'; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo")
  if command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends libcairo2 >/dev/null
  else
    echo "error: the tests need the cairo library (libcairo2); install it and run again" >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
spec="."
[ -n "${EXTRAS:-}" ] && spec=".[${EXTRAS}]"
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e "$spec"

#!/usr/bin/env bash
# Creates ./.venv with the engine installed (editable), through install.py. Sourced by example.sh
# and test.sh. EXTRAS: pip extras to add, e.g. EXTRAS=test. Uses constraints.txt: the versions the
# suite runs with. With the test extra it also installs, from the system's packages, what the tests
# drive for real: the cairo library (cairosvg), Inkscape 1.2 with its Python modules, GTK 3 for
# the extension's progress window, Xvfb, and debootstrap (the Inkscape 1.4 tests' Debian 13 chroot).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: Python 3.10 or newer is needed as '$PYTHON' (set PYTHON=/path/to/python3)" >&2
  exit 1
fi

if [[ "${EXTRAS:-}" == *test* ]]; then
  missing=()
  ldconfig -p 2>/dev/null | grep -q 'libcairo\.so\.2' || missing+=(libcairo2)
  command -v inkscape >/dev/null || missing+=(inkscape)
  command -v xvfb-run >/dev/null || missing+=(xvfb xauth)
  command -v debootstrap >/dev/null || missing+=(debootstrap)  # Inkscape 1.4 in a Debian 13 chroot (tests)
  /usr/bin/python3 -c 'import lxml, numpy, cssselect, zmq' 2>/dev/null ||
    missing+=(python3-lxml python3-numpy python3-cssselect python3-zmq)
  /usr/bin/python3 -c 'import gi; gi.require_version("Gtk", "3.0")' 2>/dev/null ||
    missing+=(python3-gi gir1.2-gtk-3.0)
  [ -x .venv/bin/python ] || "$PYTHON" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null; then
      SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo")
      echo "installing system packages for the tests: ${missing[*]}"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "error: the tests need: ${missing[*]}; install them and run again" >&2
      exit 1
    fi
  fi
fi

"$PYTHON" install.py --engine-only --extras "${EXTRAS:-}"

if [[ "${EXTRAS:-}" == *test* ]]; then
  # The extension must work with the inkex of Inkscape 1.3 and 1.4 too; the tests run its scripts
  # against each of these, next to Inkscape 1.2's own (pure Python, for Inkscape's Python).
  for version in 1.3.1 1.4.1; do
    target=.venv/inkex/$version
    if [ ! -f "$target/inkex/__init__.py" ]; then
      rm -rf "$target"
      .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --target "$target" \
        "inkex==$version" tinycss2==1.5.1 webencodings==0.6.1
    fi
  done
fi

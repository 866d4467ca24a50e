#!/usr/bin/env bash
# Sets up .venv with the test, cluster and video extras, checks lint, format and types, and runs the test suite.
#   bash scripts/test.sh                everything: what CI runs (.ci/run)
#   bash scripts/test.sh --offline      skip the tests marked network (they download from PyPI: pyzmq
#                                       wheels for other platforms, the dependencies' floor versions)
#   bash scripts/test.sh --quick        skip the tests marked slow (end-to-end runs) and network: the inner loop
# SKETCHABS_NETWORK_TESTS=0 in the environment does what --offline does; the flags combine, in any order.
# Other arguments go to pytest (a -m of your own replaces the selection above).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
EXTRAS=test,cluster,video bash "$root/scripts/setup.sh"  # cluster: Ray, for the --workers ray tests; video: animate -o OUT.mp4
cd "$root"

network="${SKETCHABS_NETWORK_TESTS:-1}"
skip=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) skip+=("not slow"); network=0 ;;
    --offline) network=0 ;;
    *) break ;;
  esac
  shift
done
if [ "$network" != 1 ]; then
  skip+=("not network")
  echo "the tests marked network (downloads from PyPI) are left out; without --offline or --quick they run, as in CI"
fi
marker=()
if [ ${#skip[@]} -gt 0 ]; then
  expression="${skip[0]}"
  for part in "${skip[@]:1}"; do expression="$expression and $part"; done
  marker=(-m "$expression")
fi

echo "ruff: lint and format"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "mypy: bridge/ strict, engine/ and inkscape_ext/ checked (pyproject.toml)"
.venv/bin/mypy

set +e
.venv/bin/python -m pytest --durations=25 "${marker[@]}" "$@"  # the slowest tests named in every CI log
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests; that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"

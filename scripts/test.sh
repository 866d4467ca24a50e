#!/usr/bin/env bash
# Sets up .venv with the test, cluster and video extras, checks lint, format and types, and runs the whole test suite.
#   bash scripts/test.sh            everything (what CI runs)
#   bash scripts/test.sh --quick    skip the tests marked slow (end-to-end runs): the inner loop
# Other arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
EXTRAS=test,cluster,video bash "$root/scripts/setup.sh"  # cluster: Ray, for the --workers ray tests; video: animate -o OUT.mp4
cd "$root"

marker=()
if [ "${1:-}" = "--quick" ]; then
  shift
  marker=(-m "not slow")
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

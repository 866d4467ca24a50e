#!/usr/bin/env bash
# Sets up .venv with the test extras and runs the whole test suite. Arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
EXTRAS=test bash "$root/scripts/setup.sh"
cd "$root"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests; that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"

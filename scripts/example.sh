#!/usr/bin/env bash
# Sets up .venv and sketches the bundled example (4 levels: 32, 16, 8, 4 strokes).
# Writes ballerina.svg and a preview ballerina-preview.png here. Extra arguments go to the CLI,
# e.g. `bash scripts/example.sh --models tiny-random --iterations 50` for an offline smoke run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/sketch-abstraction" sketch "$root/examples/ballerina.png" \
  --mask "$root/examples/ballerina_mask.png" -o ballerina.svg --preview ballerina-preview.png "$@"

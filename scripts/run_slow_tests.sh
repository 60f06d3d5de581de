#!/usr/bin/env bash
# The suites marked `slow` (teacher-size exports, long trainings), which the default test command skips.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q -p no:cacheprovider -m slow "$@"

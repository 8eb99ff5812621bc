#!/usr/bin/env bash
# Build the book: execute every notebook (profile MILR_PROFILE, default smoke), then render it with
# Sphinx warnings as errors. Used by .ci/run, the README and .github/workflows/book.yml alike.
set -euo pipefail
cd "$(dirname "$0")/.."

milr reproduce --profile "${MILR_PROFILE:-smoke}"
jupyter-book build . -W -n --keep-going
if [[ ! -f _build/html/index.html ]]; then
  echo "error: jupyter-book produced no _build/html/index.html" >&2
  exit 1
fi
echo "book built: _build/html/index.html"

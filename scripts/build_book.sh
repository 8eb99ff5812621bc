#!/usr/bin/env bash
# Build the book: execute every notebook (profile MILR_PROFILE, default paper: the committed result
# store, read only unless MILR_COMPUTE=1), then render it with Sphinx warnings as errors. Used by
# `make book`, `make test` and .github/workflows/book.yml alike.
set -euo pipefail
cd "$(dirname "$0")/.."

milr reproduce --profile "${MILR_PROFILE:-paper}"
jupyter-book build . -W -n --keep-going
if [[ ! -f _build/html/index.html ]]; then
  echo "error: jupyter-book produced no _build/html/index.html" >&2
  exit 1
fi
echo "book built: _build/html/index.html"

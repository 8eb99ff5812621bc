#!/usr/bin/env bash
# Build the book: MathJax from npm (once), every notebook executed into _build/executed/ (profile
# MILR_PROFILE, default paper: the committed result store, read only unless MILR_COMPUTE=1), the landing
# page's verdict table and summary figure from the same store, then the book with Sphinx warnings as
# errors. Tracked files are not modified. Used by `make book`, `make test` and .github/workflows/book.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${MILR_PROFILE:-paper}"

bash scripts/install_mathjax.sh
milr reproduce --profile "$profile"
python -m milr_core.landing --profile "$profile" --out book/_generated
jupyter-book build . -W -n --keep-going
if [[ ! -f _build/html/index.html ]]; then
  echo "error: jupyter-book produced no _build/html/index.html" >&2
  exit 1
fi
# The book renders offline: no page may load MathJax (or anything else) from a CDN.
if cdn="$(grep -rlE 'cdn\.jsdelivr\.net|cdnjs\.cloudflare\.com|unpkg\.com/mathjax|mathjax@' _build/html --include='*.html')"; then
  echo "error: pages load from a CDN:" >&2
  echo "$cdn" >&2
  exit 1
fi
echo "book built: _build/html/index.html"

#!/usr/bin/env bash
# Install MathJax 3 for the book from the npm registry into book/_static/mathjax (git-ignored), so that
# the rendered book typesets its maths offline, with no CDN. Run by scripts/build_book.sh; idempotent
# (a second run with the same version does nothing and needs no network).
#
#   bash scripts/install_mathjax.sh            # npm pack mathjax@$MATHJAX_VERSION, checked against its sha512
#   MATHJAX_TARBALL=path/to/mathjax-3.2.2.tgz bash scripts/install_mathjax.sh   # from a tarball on disk
set -euo pipefail
cd "$(dirname "$0")/.."

MATHJAX_VERSION="${MATHJAX_VERSION:-3.2.2}"
# npm's dist.integrity of mathjax@3.2.2 (`npm view mathjax@3.2.2 dist.integrity`).
MATHJAX_SHA512="Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
TARGET=book/_static/mathjax
STAMP="$TARGET/.version"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$MATHJAX_VERSION" && -f "$TARGET/tex-chtml.js" ]]; then
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ -n "${MATHJAX_TARBALL:-}" ]]; then
  cp "$MATHJAX_TARBALL" "$work/mathjax.tgz"
else
  if ! command -v npm >/dev/null; then
    echo "error: npm is needed to install MathJax for the book (Debian: apt-get install npm)," \
         "or set MATHJAX_TARBALL to a mathjax-$MATHJAX_VERSION.tgz" >&2
    exit 1
  fi
  (cd "$work" && npm pack --silent "mathjax@$MATHJAX_VERSION" >/dev/null)
  mv "$work"/mathjax-*.tgz "$work/mathjax.tgz"
fi
if [[ "$MATHJAX_VERSION" == 3.2.2 ]]; then
  actual="$(python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$work/mathjax.tgz")"
  if [[ "$actual" != "$MATHJAX_SHA512" ]]; then
    echo "error: mathjax-$MATHJAX_VERSION.tgz has sha512 $actual, expected $MATHJAX_SHA512" >&2
    exit 1
  fi
fi
tar -xzf "$work/mathjax.tgz" -C "$work"
# What the book loads: the TeX-to-CommonHTML component, its fonts, the TeX extensions it loads on demand,
# the menu and its accessibility parts. The SVG and MathML-input builds are left out.
rm -rf "$TARGET"
mkdir -p "$TARGET/output"
cp "$work/package/LICENSE" "$work/package/es5/tex-chtml.js" "$TARGET/"
cp -r "$work/package/es5/input" "$work/package/es5/ui" "$work/package/es5/a11y" "$work/package/es5/sre" \
  "$work/package/es5/adaptors" "$TARGET/"
cp -r "$work/package/es5/output/chtml" "$work/package/es5/output/chtml.js" "$TARGET/output/"
echo "$MATHJAX_VERSION" > "$STAMP"
echo "MathJax $MATHJAX_VERSION installed in $TARGET ($(du -sh "$TARGET" | cut -f1))"

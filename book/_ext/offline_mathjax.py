"""A Sphinx extension: MathJax from the book's own static files, on every page, never from a CDN.

``mathjax_path`` (``_config.yml``) names MathJax relative to the static files; scripts/install_mathjax.sh
installs it from the npm registry into ``book/_static/mathjax``. This extension

- includes MathJax on every page (Sphinx's "always" assets policy), not only on pages with equations
  of their own: the navigation and the chapter titles in it may hold maths on any page;
- warns (an error under ``-W``) when ``mathjax_path`` is a URL, or names a file that no
  ``html_static_path`` folder holds (MathJax not installed: the maths would show as raw TeX).
"""

from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)


def check_mathjax(app) -> None:
    if app.builder.format != "html":
        return
    path = app.config.mathjax_path
    if "://" in path or path.startswith("//"):
        logger.warning(f"mathjax_path is a URL ({path}): the book must typeset its maths offline", type="milr", subtype="mathjax")
        return
    folders = [Path(app.confdir) / folder for folder in app.config.html_static_path]
    if not any((folder / path).is_file() for folder in folders):
        logger.warning(
            f"MathJax is not installed: no {path} in {', '.join(map(str, folders)) or 'any html_static_path'}; "
            "run bash scripts/install_mathjax.sh",
            type="milr", subtype="mathjax",
        )  # fmt: skip


def setup(app) -> dict:
    app.set_html_assets_policy("always")
    app.connect("builder-inited", check_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

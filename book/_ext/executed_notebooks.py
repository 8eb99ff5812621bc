"""A Sphinx extension: render each notebook as ``milr reproduce`` executed it, not the tracked file.

Why: the tracked ``notebooks/NN_name.ipynb`` are what Colab opens: inputs only (a build must leave
``git status`` clean), their Markdown made plain (``milr_core/colab.py``). ``milr reproduce`` executes
the MyST source ``notebooks/NN_name.md`` and writes the executed copy, with its outputs and its MyST
Markdown (numbered figures, citations, cross-references), to ``_build/executed/notebooks/NN_name.ipynb``
(``milr_executed_dir``, relative to the book's root). On ``source-read`` this extension hands myst-nb
the executed copy instead of the tracked file, so the page shows the outputs while its docname, its
launch buttons and its Colab link stay those of the tracked notebook. The executed copy is a dependency
of the page (an incremental build re-reads it when it changes).

It warns (an error under ``-W``) when a notebook has no executed copy, or when the copy's cells are not
the tracked notebook's (a stale run: other code cells, or cells of other types in another order): the
book never shows outputs of code other than what Colab runs.
"""

import json
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)
INJECTED_TAG = "injected-parameters"  # papermill's cell with the parameters of the run


def input_cells(notebook: dict) -> list[tuple[str, str]]:
    """(type, source) of each cell but papermill's injected parameters cell, a Markdown cell's source left
    out (the tracked copy's is plain Markdown, the executed copy's MyST)."""

    def text(source) -> str:
        return "".join(source) if isinstance(source, list) else source

    return [
        (cell["cell_type"], text(cell["source"]) if cell["cell_type"] == "code" else "")
        for cell in notebook.get("cells", [])
        if INJECTED_TAG not in cell.get("metadata", {}).get("tags", [])
    ]


def render_executed(app, docname: str, source: list[str]) -> None:
    path = Path(app.env.doc2path(docname))
    if path.suffix != ".ipynb":
        return
    executed = Path(app.srcdir) / app.config.milr_executed_dir / path.relative_to(app.srcdir)
    if not executed.is_file():
        logger.warning(
            f"no executed copy of {path.relative_to(app.srcdir)} at {executed}: run `milr reproduce` first "
            "(the page shows the inputs only)",
            location=docname, type="milr", subtype="executed",
        )  # fmt: skip
        return
    app.env.note_dependency(str(executed))
    text = executed.read_text(encoding="utf-8")
    if input_cells(json.loads(text)) != input_cells(json.loads(source[0])):
        logger.warning(
            f"{executed} is stale: its cells are not those of {path.relative_to(app.srcdir)}; run `milr reproduce`",
            location=docname, type="milr", subtype="executed",
        )  # fmt: skip
        return
    source[0] = text


def setup(app) -> dict:
    app.add_config_value("milr_executed_dir", "_build/executed", "env")
    app.connect("source-read", render_executed)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

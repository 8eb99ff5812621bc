"""Write the notebooks Colab opens and execute the book's notebooks with papermill into a build folder.

Each chapter lives in ``notebooks/NN_name.md`` (a jupytext MyST notebook, the source of truth, what the
book renders) and ``notebooks/NN_name.ipynb`` (tracked, inputs only: what Colab opens). ``reproduce``:

1. writes each ``.md`` into its ``.ipynb`` with the same cells, code and tags, its Markdown made plain
   (``colab.py``: admonitions as quotes, figures' captions in bold, citations as links) and the install
   cell pointing at the repository URL of ``_config.yml`` (``milr_core.repository``); a file whose
   content would not change is left alone, so a run leaves ``git status`` clean;
2. executes the MyST form with papermill into ``_build/executed/notebooks/NN_name.ipynb``
   (``executed_dir``; git-ignored), injecting ``profile`` ("smoke" or "paper") after the cell tagged
   ``parameters``; the kernel is the current interpreter, and the working directory is the notebooks
   folder's parent (the repository root, so ``results/`` resolves as for the CLI);
3. tags the original ``parameters`` cell of the executed copy ``remove-cell``, so that the page shows
   the parameters once, as papermill injected them (the profile actually used);
4. stops at the first failing notebook with a ``ReproduceError`` naming it and its failing cell (the
   executed copy, with the traceback, stays in the build folder; the tracked files are untouched).

The book renders the executed copies in place of the tracked notebooks (``book/_ext/executed_notebooks.py``),
so its launch buttons still open the tracked, plain ``.ipynb``. ``strip_all()`` makes tracked notebooks
inputs-only again if someone executed them in place by hand.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import jupytext
import nbformat
import papermill
from ipykernel.kernelspec import write_kernel_spec
from papermill.exceptions import PapermillExecutionError
from tqdm.auto import tqdm

from milr_core.colab import colab_notebook, read_links
from milr_core.repository import checkout_root, configured_url, set_install_cells

PROFILES = ("smoke", "paper")
INJECTED_TAG = "injected-parameters"  # papermill's tag on the parameters cell it adds
ERROR_TAG = "papermill-error-cell-tag"  # and on the markdown cells pointing at a failure
PARAMETERS_TAG = "parameters"  # the notebook's own parameters cell
HIDDEN_TAG = "remove-cell"  # myst-nb leaves a cell so tagged off the page
EXECUTED_DIR = Path("_build") / "executed"  # under the repository root (the notebooks folder's parent)


class ReproduceError(RuntimeError):
    """A notebook failed to execute; the message names the notebook and the failing cell."""


def _notebook_sources(notebooks_dir: str | Path = "notebooks", only: str | None = None) -> list[Path]:
    """The ``NN_name.md`` notebooks in order, or the one whose stem (or file name) is ``only``."""
    sources = sorted(Path(notebooks_dir).glob("*.md"))
    if only is None:
        return sources
    chosen = [p for p in sources if only in (p.stem, p.name)]
    if not chosen:
        raise ValueError(f"no notebook {only!r} in {notebooks_dir}; known: {', '.join(p.stem for p in sources)}")
    return chosen


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """A notebook from its MyST source (``.md``, read as MyST whatever its header says) or an ``.ipynb``."""
    return jupytext.read(path, fmt="md:myst" if Path(path).suffix == ".md" else None)


def _repository_url_for(notebooks_dir: str | Path) -> str | None:
    """``repository.url`` of the checkout holding ``notebooks_dir`` (its ``_config.yml``), None outside one."""
    root = checkout_root(Path(notebooks_dir))
    return configured_url(root) if root is not None else None


def _myst_notebook(source: Path, url: str | None = None) -> nbformat.NotebookNode:
    """The MyST notebook ``source`` as the book executes it: inputs only, the install cell pointing at ``url``
    (default: the checkout's ``_config.yml``; None outside a checkout leaves the cell as written)."""
    notebook = read_notebook(source)
    _clean_inputs(notebook)
    url = url or _repository_url_for(Path(source).parent)
    if url:
        set_install_cells(notebook, url)
    return notebook


def colab_text(source: Path, url: str | None = None) -> str:
    """The text of the ``.ipynb`` Colab opens for the MyST notebook ``source`` (``colab.colab_notebook``)."""
    source = Path(source)
    root = checkout_root(source.parent) or source.parent.parent
    notebook = colab_notebook(_myst_notebook(source, url), source.stem, read_links(root))
    text = jupytext.writes(notebook, fmt="ipynb")
    return text if text.endswith("\n") else text + "\n"


def sync_ipynb(source: Path, url: str | None = None) -> Path:
    """Write the inputs-only, plain-Markdown ``.ipynb`` of the MyST notebook ``source``; returns its path.

    The file is rewritten only when its content changes, so a sync of an unchanged pair leaves ``git status``
    clean. Raises ``colab.ColabError`` when a Markdown cell holds MyST without a plain form.
    """
    target = Path(source).with_suffix(".ipynb")
    text = colab_text(source, url)
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    return target


def sync_all(notebooks_dir: str | Path = "notebooks") -> list[Path]:
    """``sync_ipynb`` on every MyST notebook; returns the ``.ipynb`` files whose content changed."""
    changed = []
    for source in _notebook_sources(notebooks_dir):
        target = source.with_suffix(".ipynb")
        before = target.read_bytes() if target.is_file() else None
        sync_ipynb(source)
        if target.read_bytes() != before:
            changed.append(target)
    return changed


def executed_dir(notebooks_dir: str | Path = "notebooks") -> Path:
    """Where ``reproduce`` writes the executed notebooks: ``<root>/_build/executed/<notebooks folder name>``."""
    notebooks_dir = Path(notebooks_dir).resolve()
    return notebooks_dir.parent / EXECUTED_DIR / notebooks_dir.name


def _hide_original_parameters(path: Path) -> None:
    """Tag the notebook's own ``parameters`` cell ``remove-cell`` in an executed copy that has papermill's
    injected one, so that the page shows the parameters once: those the run used."""
    notebook = nbformat.read(path, as_version=4)
    if not any(INJECTED_TAG in c.metadata.get("tags", []) for c in notebook.cells):
        return
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if PARAMETERS_TAG in tags and HIDDEN_TAG not in tags:
            cell.metadata["tags"] = [*tags, HIDDEN_TAG]
    nbformat.write(notebook, path)


def _clean_inputs(notebook: nbformat.NotebookNode) -> None:
    """Leave only inputs in a notebook: no outputs, counts, papermill cells or run metadata."""
    notebook.cells = [c for c in notebook.cells if not {INJECTED_TAG, ERROR_TAG} & set(c.metadata.get("tags", []))]
    for cell in notebook.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notebook.metadata.pop("papermill", None)


def _strip_outputs(path: str | Path) -> None:
    """Make an executed ``.ipynb`` inputs-only again: no outputs, counts, papermill cells or run metadata."""
    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    _clean_inputs(notebook)
    nbformat.write(notebook, path)


def strip_all(notebooks_dir: str | Path = "notebooks") -> list[Path]:
    """``_strip_outputs`` on every paired ``.ipynb``; returns the paths stripped."""
    paths = [p.with_suffix(".ipynb") for p in _notebook_sources(notebooks_dir) if p.with_suffix(".ipynb").exists()]
    for path in paths:
        _strip_outputs(path)
    return paths


@contextlib.contextmanager
def _interpreter_kernel(name: str) -> Iterator[str]:
    """Make kernel ``name`` run this interpreter (``sys.executable``) while the context is open.

    Why: a kernelspec found elsewhere (the user's, a system one) may point at another Python without
    milr_core. A spec written to a temporary directory placed first on JUPYTER_PATH shadows it.
    """
    previous = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory(prefix="milr-kernels-") as tmp:
        # tqdm.auto's notice that ipywidgets is missing is about the kernel's setup, not the experiment.
        write_kernel_spec(Path(tmp) / "kernels" / name, overrides={"env": {"PYTHONWARNINGS": "ignore:IProgress not found"}})
        os.environ["JUPYTER_PATH"] = os.pathsep.join([tmp, previous] if previous else [tmp])
        try:
            yield name
        finally:
            if previous is None:
                del os.environ["JUPYTER_PATH"]
            else:
                os.environ["JUPYTER_PATH"] = previous


def _failure_message(notebook: Path, executed: Path, error: PapermillExecutionError) -> str:
    source = error.source.strip().splitlines()
    shown = "\n    ".join(source[:8] + (["..."] if len(source) > 8 else []))
    return (
        f"{notebook} failed in cell {error.cell_index} of the executed notebook (execution count {error.exec_count}):\n    {shown}\n"
        f"{error.ename}: {error.evalue}\n(the executed notebook, with the traceback, is {executed})"
    )


@contextlib.contextmanager
def _compute_setting(compute: bool | None) -> Iterator[None]:
    """Set ``MILR_COMPUTE`` (read by ``run_experiment`` in the kernels) while the context is open; None: leave it."""
    previous = os.environ.get("MILR_COMPUTE")
    if compute is not None:
        os.environ["MILR_COMPUTE"] = "1" if compute else "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MILR_COMPUTE", None)
        else:
            os.environ["MILR_COMPUTE"] = previous


def reproduce(
    profile: str = "smoke",
    only: str | None = None,
    notebooks_dir: str | Path = "notebooks",
    kernel: str = "python3",
    compute: bool | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, float]:
    """Sync and execute every notebook (or ``only`` one) with ``profile``; returns notebook -> seconds.

    compute=True has the notebooks compute the cells their profile's store lacks, compute=False has
    them read the store only; None leaves it to ``MILR_COMPUTE`` or the profile (``run_experiment``).
    The executed notebooks go to ``out_dir`` (default ``executed_dir(notebooks_dir)``); the tracked
    ``.ipynb`` files stay inputs only.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    sources = _notebook_sources(notebooks_dir, only)
    if not sources:
        raise ValueError(f"no notebooks (*.md) in {notebooks_dir}")
    cwd = Path(notebooks_dir).resolve().parent
    out_dir = Path(out_dir) if out_dir is not None else executed_dir(notebooks_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    with _interpreter_kernel(kernel), _compute_setting(compute):
        for source in (bar := tqdm(sources, desc="notebooks", unit="notebook")):
            bar.set_postfix_str(source.stem)
            notebook = sync_ipynb(source)
            executed = out_dir / notebook.name
            nbformat.write(_myst_notebook(source), executed)  # papermill's input: the MyST form, for the book
            start = time.perf_counter()
            try:
                papermill.execute_notebook(
                    executed, executed, parameters={"profile": profile}, kernel_name=kernel, cwd=cwd, progress_bar=False
                )
            except PapermillExecutionError as error:
                raise ReproduceError(_failure_message(notebook, executed, error)) from None
            except Exception as error:  # a dead kernel, a missing kernelspec: no cell to name
                raise ReproduceError(f"{notebook} could not be executed: {type(error).__name__}: {error}") from error
            _hide_original_parameters(executed)
            seconds[source.stem] = round(time.perf_counter() - start, 1)
    return seconds

"""Execute the book's notebooks with papermill, in order, so that the book renders what actually ran.

Each experiment lives in ``notebooks/NN_name.md`` (a jupytext MyST notebook, the source of truth) with
a paired ``notebooks/NN_name.ipynb`` that the book renders and that Colab opens. ``reproduce``:

1. converts each ``.md`` into its ``.ipynb`` (inputs only, so the pair is always in sync);
2. executes the ``.ipynb`` in place with papermill, injecting ``profile`` ("smoke" or "paper") after
   the cell tagged ``parameters``; the kernel is the current interpreter, and the working directory
   is the notebooks folder's parent (the repository root, so ``results/`` resolves as for the CLI);
3. stops at the first failing notebook with a ``ReproduceError`` naming it and its failing cell.

The executed ``.ipynb`` files hold outputs (and papermill's ``injected-parameters`` cell, and its
error cells after a failure). They are
build products: the committed notebooks are inputs only. Run ``strip_all()`` before committing
(``python -c "from milr_core.reproduce import strip_all; strip_all()"``).
"""

from __future__ import annotations

import contextlib
import os
import sys
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

PROFILES = ("smoke", "paper")
INJECTED_TAG = "injected-parameters"  # papermill's tag on the parameters cell it adds
ERROR_TAG = "papermill-error-cell-tag"  # and on the markdown cells pointing at a failure


class ReproduceError(RuntimeError):
    """A notebook failed to execute; the message names the notebook and the failing cell."""


def notebook_sources(notebooks_dir: str | Path = "notebooks", only: str | None = None) -> list[Path]:
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


def sync_ipynb(source: Path) -> Path:
    """Write the inputs-only ``.ipynb`` paired with the MyST notebook ``source``; returns its path."""
    target = source.with_suffix(".ipynb")
    jupytext.write(read_notebook(source), target, fmt="ipynb")
    return target


def strip_outputs(path: str | Path) -> None:
    """Make an executed ``.ipynb`` inputs-only again: no outputs, counts, papermill cells or run metadata."""
    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    notebook.cells = [c for c in notebook.cells if not {INJECTED_TAG, ERROR_TAG} & set(c.metadata.get("tags", []))]
    for cell in notebook.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notebook.metadata.pop("papermill", None)
    nbformat.write(notebook, path)


def strip_all(notebooks_dir: str | Path = "notebooks") -> list[Path]:
    """``strip_outputs`` on every paired ``.ipynb``; returns the paths stripped."""
    paths = [p.with_suffix(".ipynb") for p in notebook_sources(notebooks_dir) if p.with_suffix(".ipynb").exists()]
    for path in paths:
        strip_outputs(path)
    return paths


@contextlib.contextmanager
def interpreter_kernel(name: str) -> Iterator[str]:
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


def failure_message(notebook: Path, error: PapermillExecutionError) -> str:
    source = error.source.strip().splitlines()
    shown = "\n    ".join(source[:8] + (["..."] if len(source) > 8 else []))
    return (
        f"{notebook} failed in cell {error.cell_index} of the executed notebook (execution count {error.exec_count}):\n    {shown}\n"
        f"{error.ename}: {error.evalue}\n(the executed notebook, with the traceback, is {notebook})"
    )


@contextlib.contextmanager
def compute_setting(compute: bool | None) -> Iterator[None]:
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
) -> dict[str, float]:
    """Sync and execute every notebook (or ``only`` one) with ``profile``; returns notebook -> seconds.

    compute=True has the notebooks compute the cells their profile's store lacks, compute=False has
    them read the store only; None leaves it to ``MILR_COMPUTE`` or the profile (``run_experiment``).
    The executed notebooks overwrite the paired ``.ipynb`` files with outputs; ``strip_all`` restores
    the committed, inputs-only state.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    sources = notebook_sources(notebooks_dir, only)
    if not sources:
        raise ValueError(f"no notebooks (*.md) in {notebooks_dir}")
    cwd = Path(notebooks_dir).resolve().parent
    seconds: dict[str, float] = {}
    with interpreter_kernel(kernel), compute_setting(compute):
        for source in (bar := tqdm(sources, desc="notebooks", unit="notebook")):
            bar.set_postfix_str(source.stem)
            notebook = sync_ipynb(source)
            start = time.perf_counter()
            try:
                papermill.execute_notebook(
                    notebook, notebook, parameters={"profile": profile}, kernel_name=kernel, cwd=cwd, progress_bar=False
                )
            except PapermillExecutionError as error:
                raise ReproduceError(failure_message(notebook, error)) from None
            except Exception as error:  # a dead kernel, a missing kernelspec: no cell to name
                raise ReproduceError(f"{notebook} could not be executed: {type(error).__name__}: {error}") from error
            seconds[source.stem] = round(time.perf_counter() - start, 1)
    return seconds

"""The notebook layer: what every chapter does, so that Colab (or any Jupyter) shows what the book shows.

A chapter's code is its parameters, one setup call, its tables and its figures; everything it shows is
displayed by the cell that makes it (so a plain Jupyter shows it) and glued for the book under a name.

**The chapter convention** (``notebooks/NN_name.md``, MyST; ``milr reproduce`` writes from it the
``.ipynb`` Colab opens, its Markdown made plain by ``colab.py``; ``tests/test_book.py`` checks the rules):

1. Markdown: the title, an admonition "Recomputing this chapter" (the experiments and the data they
   need), what the paper says and what is ours. Markdown holds no number computed at run time: the MyST
   it may use is admonitions, ``{glue:figure}``, ``{numref}``, ``{cite:p}``/``{cite:t}``, ``{doc}``,
   ``{py:...}`` and ``$...$`` maths (``colab.py`` gives each a plain form).
2. The install cell, as in every chapter (``%pip install -q git+URL`` on Colab; ``milr reproduce``
   writes the URL of ``_config.yml``), then the cell tagged ``parameters``::

       profile = "paper"  # the committed store, as the book shows it; "smoke": tiny grids computed live
       compute = None  # True computes the cells the store lacks (on a GPU: compute = torch.cuda.is_available())

3. The setup cell: ``chapter = book.chapter(profile, ["power_law"], compute=compute)``. It sets the
   figure style, checks before any compute that the data the missing cells need are on disk (else one
   line says which and how to get them), and displays what this run reads or computes. Then
   ``frame = chapter.run("power_law")`` (None while the store holds none of the experiment's cells).
4. Tables: a cell ending in ``book.table(frame)``.
5. Figures: a cell tagged ``remove-output`` calling ``book.figure("fig-x", fig, frame)`` (it displays the
   figure and its data sentence, and glues both for the book, which shows them once, numbered), then a
   Markdown cell with the figure::

       ```{glue:figure} fig-x
       :name: fig-x
       :alt: what the figure shows, in words

       The caption. {glue:md}`fig-x-data`
       ```

   ``fig`` may be a function drawing the figure, called only when the frame holds rows (else a
   placeholder says the store lacks them).
6. Sentences with numbers ("What we see"): a cell tagged ``remove-input`` calling
   ``book.say("name", text)``, the text from ``findings.py`` (plain text: Unicode, no TeX), often
   ``chapter.per_dataset(frame, sentence)``: one bullet per dataset.

``milr reproduce --profile smoke`` (and ``make test``) runs every chapter at ``smoke`` through papermill.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

with warnings.catch_warnings():  # tqdm.auto's notice that ipywidgets is missing is about Jupyter, not the chapter
    warnings.filterwarnings("ignore", message="IProgress not found")
    import tqdm.auto  # noqa: F401

from milr_core import style  # noqa: E402
from milr_core.experiments import PROFILES, computes_missing, coverage, experiment_grids, run_experiment  # noqa: E402

NOT_STORED = "the store holds none of these cells yet"
NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "gaussians": "Gaussians"}
WRAP_AT = 60  # a text column with longer entries wraps in a table instead of widening it


class MissingDataError(RuntimeError):
    """Data that cells to be computed need is not on disk and may not be downloaded; the message says which and how."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this one line instead of a traceback
        return [f"{type(self).__name__}: {self}"]


@dataclass(frozen=True)
class Chapter:
    """A chapter's profile, experiments, and whether it computes the cells its store lacks (``chapter()``)."""

    profile: str
    experiments: tuple[str, ...]
    compute: bool

    def run(self, name: str, compute: bool | None = None) -> pd.DataFrame | None:
        """The experiment's frame (``run_experiment``; ``compute`` None: the chapter's choice), or None while
        the store holds none of its cells."""
        try:
            return run_experiment(name, self.profile, compute=self.compute if compute is None else compute)
        except LookupError:
            return None

    def datasets(self, experiment: str | None = None) -> list[str]:
        """The datasets of the chapter's grids (or of one experiment's) at its profile, in the book's order."""
        names = [experiment] if experiment else self.experiments
        named = {d for name in names for grid in experiment_grids(name, self.profile) for d in grid.datasets}
        return [d for d in NAMES if d in named] + sorted(named - NAMES.keys())

    def per_dataset(self, frame: pd.DataFrame | None, sentence: Callable[[str], str], experiment: str | None = None) -> str:
        """A Markdown list, one item per dataset of the chapter's grids (or of ``experiment``'s): its name
        (and threshold) and ``sentence(dataset)``, or why it has no number (the store holds none of its cells)."""
        items = []
        for dataset in self.datasets(experiment):
            rows = frame[frame["dataset"] == dataset] if frame is not None and "dataset" in frame else None
            if rows is None or rows.empty:
                items.append(f"- **{label(dataset)}**: {NOT_STORED}.")
                continue
            threshold = f" (t = {rows['threshold'].iloc[0]:g})" if "threshold" in rows else ""
            items.append(f"- **{label(dataset)}**{threshold}: {sentence(dataset)}")
        return "\n".join(items)


def label(dataset: str) -> str:
    return NAMES.get(dataset, dataset)


def chapter(profile: str, experiments: list[str], compute: bool | None = None) -> Chapter:
    """Set up a chapter (see the module docstring): style, a data check before any compute, the run's note.

    Args:
        profile: "smoke" (tiny grids computed live) or "paper" (the committed store).
        experiments: the experiments the chapter reads (``milr_core/grids/NAME.yaml``).
        compute: whether to compute the cells the store lacks; None: ``MILR_COMPUTE``, else the profile's
            default (``experiments.computes_missing``).

    Returns:
        The Chapter. Raises ``MissingDataError`` (one line) when cells to be computed need data that is not
        on disk while downloads are off, and ValueError for an unknown profile or experiment.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    for name in experiments:
        experiment_grids(name, profile)  # an unknown experiment: one line naming the known ones
    computing = computes_missing(profile, compute)
    missing = missing_cells(profile, experiments) if computing else {}
    download = check_data(missing, experiments)
    style.set_style()
    say("recompute", run_note(profile, experiments, computing, missing) + download)
    return Chapter(profile, tuple(experiments), computing)


# ----------------------------------------------------------------------------------------------------------
# what a run needs and does


def missing_cells(profile: str, experiments: list[str]) -> dict[str, int]:
    """Per dataset, how many cells of the experiments' grids the profile's store lacks (reads no data: a
    dataset whose identity the committed manifest lacks counts all its cells, since they must be computed
    from its files)."""
    from milr_core.data import manifest_identity
    from milr_core.repository import committed_store
    from milr_core.store import ResultStore
    from milr_core.sweep import expand

    store, missing = ResultStore(committed_store(profile)), {}
    for name in experiments:
        for grid in experiment_grids(name, profile):
            unknown = set()

            def identity(dataset: str, options: dict) -> dict:
                found = manifest_identity(dataset, options)
                if found is None:
                    unknown.add(dataset)
                return found or {"unknown": options}

            for cell in expand(grid, identity):
                dataset = cell.spec["dataset"]
                if dataset in unknown or not store.has(cell.hash):
                    missing[dataset] = missing.get(dataset, 0) + 1
    return missing


def _data_cache() -> Path:
    """Where ``data.load_dataset`` looks after ``MILR_DATA``: ``MILR_CACHE``, else ``~/.cache/milr``."""
    return Path(os.environ.get("MILR_CACHE") or Path.home() / ".cache" / "milr").expanduser()


def check_data(missing: dict[str, int], experiments: list[str]) -> str:
    """Check, without loading it, that the data the missing cells need is on disk or may be downloaded.

    Returns a sentence naming what will be downloaded ("" when nothing will); raises MissingDataError
    (one line: what is missing and how to get it) when downloads are off (``MILR_OFFLINE=1``).
    """
    from milr_core import datafiles

    absent = []
    for dataset in (d for d in missing if d != "gaussians"):  # the Gaussian task is generated, never read
        try:
            datafiles.locate(dataset, None, _data_cache(), download=False)
        except datafiles.DatasetNotFoundError:
            absent.append(dataset)
    if not absent:
        return ""
    names = " and ".join(label(d) for d in absent)
    if os.environ.get("MILR_OFFLINE", "").lower() in ("1", "true", "yes"):
        how = " ".join(datafiles._how_to_get(d) for d in absent)  # the one place that says where each file goes
        cells = sum(missing[d] for d in absent)
        raise MissingDataError(
            f"{', '.join(experiments)}: {cells} cells to compute need {names}, which is not on disk and MILR_OFFLINE=1 "
            f"forbids downloading it. To get it: {how} Or read the store only: compute = False."
        )  # fmt: skip
    return f" {names} will be downloaded first, into {_data_cache()}."


def took(hours: float) -> str:
    """A duration for prose: "40 s", "12 minutes", "3.2 hours"."""
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    return f"{60 * hours:.0f} minutes" if hours < 1 else f"{hours:.1f} hours"


def run_note(profile: str, experiments: list[str], computing: bool, missing: dict[str, int]) -> str:
    """What this run reads or computes, in Markdown (no TeX): the profile, the store's coverage of the
    chapter's grids, the hours and devices its cells took, whose numbers these are."""
    grids = coverage(profile)
    grids = grids[grids["experiment"].isin(experiments)]
    stored, cells, hours = int(grids["stored"].sum()), int(grids["cells"].sum()), float(grids["hours"].sum())
    devices = " and ".join(sorted({d for text in grids["devices"] for d in text.split("; ") if d}))
    todo = sum(missing.values())
    if profile == "smoke":
        action = (f"computing the {todo} cells the store lacks, live" if computing and todo else "reading the store")
        return (f"**Profile `smoke`**: tiny grids ({cells} cells), {action}. These numbers check the pipeline; "
                "they say nothing about the paper.")  # fmt: skip
    held = f"{stored} of the {cells} cells of this chapter's grids" if stored < cells else f"all {cells} cells of its grids"
    spent = f", computed in {took(hours)} on {devices}" if stored else ""
    if computing and todo:
        action = f"It computes the {todo} cells the store lacks first (each stored as it finishes), then reads it."
    elif stored < cells:
        action = "To compute the missing cells (minutes to hours on a GPU), set `compute = True`."
    else:
        action = "Nothing is computed."
    return (f"**Profile `{profile}`**: every number is read from the committed store, which holds {held}{spent}. "
            f"{action} These numbers are ours, measured with our protocol; the paper's are not known to us.")  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# showing: figures, sentences, tables


def figure(name: str, fig: Figure | Callable[[], Figure], data: pd.DataFrame | None) -> None:
    """Display a figure and its data sentence where it is made, and glue both for the book.

    Args:
        name: the figure's name, that of its ``{glue:figure}`` (the data sentence is glued as ``NAME-data``).
        fig: the figure, or a function drawing it, called only when ``data`` holds rows.
        data: the tidy frame it shows (the data sentence names its data, profile, seeds, partial grids and
            devices, ``style.frame_provenance``); None or empty: a placeholder says the store lacks it.
    """
    import matplotlib.pyplot as plt
    from IPython.display import Image, display
    from myst_nb import glue

    from milr_core.plot_curvature import not_computed

    if data is None or len(data) == 0:
        fig = not_computed(f"{NOT_STORED.capitalize()}.") if callable(fig) or fig is None else fig
        sentence = f"**Not yet computed:** {NOT_STORED}."
    else:
        fig = fig() if callable(fig) else fig
        sentence = style.frame_provenance(data)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=200)
    display(Image(png.getvalue(), retina=True))  # an <img> wherever the notebook is shown
    say(f"{name}-data", sentence)
    glue(name, fig, display=False)  # SVG, for the book's numbered figure
    plt.close(fig)


def say(name: str, text: str) -> None:
    """Display Markdown ``text`` (no TeX: Unicode η*, λ₁, d·w) and glue it as ``name``."""
    from IPython.display import Markdown, display
    from myst_nb import glue

    display(Markdown(text))
    glue(name, Markdown(text), display=False)


def table(frame: pd.DataFrame | None, digits: int = 3):
    """A frame as the book shows it (``style.table``), long text columns wrapped; None: a note that the
    store holds none of its cells yet."""
    if frame is None or len(frame.columns) == 0:
        return style.table(pd.DataFrame({"note": [NOT_STORED]}))
    styled = style.table(frame, digits)
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c]) or frame[c].dtype == object]
    long = [c for c in text if frame[c].astype(str).str.len().max() > WRAP_AT]
    return styled.set_properties(subset=long, **{"white-space": "normal", "min-width": "18em"}) if long else styled

"""The notebook layer (``book.py``), the chapters' sentences (``findings.py``) and the plain Markdown Colab
opens (``colab.py``), against planted frames, stores and MyST."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from milr_core import book, colab, findings  # noqa: E402

# ----------------------------------------------------------------------------------------------------------
# book: what a run reads or computes, and the data it needs


@pytest.fixture
def shown(monkeypatch) -> list:
    """Every object displayed (IPython's display) and glued (myst_nb's), as (kind, name or None, object)."""
    import IPython.display
    import myst_nb.ext.glue

    seen = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects, **_: seen.extend(("display", None, o) for o in objects))

    def glued(bundle, raw=True, metadata=None):
        seen.append(("glue", metadata["scrapbook"]["name"], bundle))

    monkeypatch.setattr(myst_nb.ext.glue, "ipy_display", glued)
    return seen


def fake_coverage(rows: list[dict]):
    return lambda profile: pd.DataFrame(rows)


COVERAGE = [
    {"experiment": "power_law", "grid": "a", "cells": 10, "stored": 6, "devices": "cpu: x86 (torch 2)", "hours": 0.5},
    {"experiment": "power_law", "grid": "b", "cells": 10, "stored": 10, "devices": "cuda: H200 (torch 2)", "hours": 2.0},
    {"experiment": "sharpness", "grid": "c", "cells": 5, "stored": 0, "devices": "", "hours": 0.0},
]


def test_took():
    assert book.took(10 / 3600) == "10 s"
    assert book.took(0.5) == "30 minutes"
    assert book.took(3.24) == "3.2 hours"


def test_run_note_says_what_the_store_holds_and_how_to_compute_the_rest(monkeypatch):
    monkeypatch.setattr(book, "coverage", fake_coverage(COVERAGE))
    note = book.run_note("paper", ["power_law"], computing=False, missing={})
    assert "16 of the 20 cells" in note and "2.5 hours" in note
    assert "cpu: x86 (torch 2)" in note and "cuda: H200 (torch 2)" in note
    assert "`compute = True`" in note and "not known to us" in note
    computing = book.run_note("paper", ["power_law"], computing=True, missing={"mnist": 3, "cifar10": 1})
    assert "computes the 4 cells the store lacks" in computing
    monkeypatch.setattr(book, "coverage", fake_coverage(COVERAGE[1:2]))
    assert "Nothing is computed" in book.run_note("paper", ["power_law"], computing=False, missing={})
    smoke = book.run_note("smoke", ["power_law"], computing=True, missing={"gaussians": 7})
    assert "computing the 7 cells" in smoke and "say nothing about the paper" in smoke


def test_missing_cells_counts_per_dataset_without_reading_data(monkeypatch, tmp_path):
    from milr_core import data, store
    from milr_core.experiments import experiment_grids
    from milr_core.sweep import expand

    monkeypatch.setenv("MILR_RESULTS", str(tmp_path))
    grids = experiment_grids("power_law", "smoke")
    cells = [cell for grid in grids for cell in expand(grid, lambda name, options: data.manifest_identity(name, options))]
    per_dataset = pd.Series([c.spec["dataset"] for c in cells]).value_counts().to_dict()
    assert book.missing_cells("smoke", ["power_law"]) == per_dataset  # an empty store lacks every cell
    planted = {cells[0].hash}
    monkeypatch.setattr(store.ResultStore, "has", lambda self, cell_hash: cell_hash in planted)
    fewer = book.missing_cells("smoke", ["power_law"])
    assert fewer[cells[0].spec["dataset"]] == per_dataset[cells[0].spec["dataset"]] - 1

    def nothing_known(name, options):  # a dataset the manifest lacks: its cells must be computed from its files
        return None

    monkeypatch.setattr(data, "manifest_identity", nothing_known)
    assert book.missing_cells("smoke", ["power_law"]) == per_dataset


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    """No dataset on disk: MILR_DATA and MILR_CACHE point at empty folders."""
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("MILR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MILR_CACHE", str(tmp_path / "cache"))


def test_missing_data_is_one_line_before_any_compute(no_data, monkeypatch):
    monkeypatch.setenv("MILR_OFFLINE", "1")
    with pytest.raises(book.MissingDataError) as error:
        book.check_data({"mnist": 3, "cifar10": 2, "gaussians": 9}, ["power_law"])
    message = str(error.value)
    assert "\n" not in message and "MNIST and CIFAR-10" in message and "5 cells" in message
    assert "MILR_DATA" in message and "compute = False" in message
    assert error.value._render_traceback_() == [f"MissingDataError: {message}"]  # IPython shows this, not a traceback
    assert book.check_data({"gaussians": 9}, ["power_law"]) == ""  # generated, never read


def test_online_missing_data_is_announced_not_refused(no_data, monkeypatch):
    monkeypatch.delenv("MILR_OFFLINE", raising=False)
    assert "MNIST will be downloaded" in book.check_data({"mnist": 1}, ["power_law"])


def test_a_chapter_refuses_before_computing(no_data, monkeypatch, shown):
    monkeypatch.setenv("MILR_OFFLINE", "1")
    monkeypatch.setattr(book, "run_experiment", lambda *a, **k: pytest.fail("computed before checking the data"))
    with pytest.raises(ValueError, match="unknown profile 'papers'"):
        book.chapter("papers", ["power_law"])
    with pytest.raises(ValueError, match="unknown experiment 'power_laws'"):
        book.chapter("paper", ["power_laws"])
    with pytest.raises(book.MissingDataError, match="MNIST"):
        book.chapter("smoke", ["power_law"], compute=True)
    assert not shown, "nothing is displayed before the check"


def test_a_reading_chapter_needs_no_data(no_data, monkeypatch, shown):
    monkeypatch.setenv("MILR_OFFLINE", "1")
    monkeypatch.setattr(book, "coverage", fake_coverage(COVERAGE))
    chapter = book.chapter("paper", ["power_law"], compute=False)
    assert (chapter.profile, chapter.experiments, chapter.compute) == ("paper", ("power_law",), False)
    assert [(kind, name) for kind, name, _ in shown] == [("display", None), ("glue", "recompute")]
    assert "16 of the 20 cells" in shown[0][2].data


# ----------------------------------------------------------------------------------------------------------
# book: showing


def sweep_frame() -> pd.DataFrame:
    return pd.DataFrame({"dataset": ["mnist", "mnist", "gaussians"], "seed": [0, 1, 0], "profile": "paper",
                         "depth": [4, 4, 2], "width": [64, 64, 16], "threshold": [0.925, 0.925, 0.8]})  # fmt: skip


def test_figure_displays_an_image_and_its_data_sentence_and_glues_both(shown):
    from IPython.display import Image, Markdown

    fig, _ = plt.subplots()
    book.figure("fig-x", fig, sweep_frame())
    kinds = [(kind, name, type(obj).__name__) for kind, name, obj in shown]
    assert kinds == [("display", None, "Image"), ("display", None, "Markdown"), ("glue", "fig-x-data", "dict"),
                     ("glue", "fig-x", "dict")]  # fmt: skip
    assert isinstance(shown[0][2], Image) and shown[0][2].format == "png"
    assert isinstance(shown[1][2], Markdown) and "Seeds: 0, 1" in shown[1][2].data and "`paper`" in shown[1][2].data
    assert any(key.endswith("image/svg+xml") for key in shown[3][2]), "the book's figure is SVG"
    assert not plt.get_fignums(), "the figure is closed once shown"


def test_figure_without_data_draws_a_placeholder_not_the_figure(shown):
    book.figure("fig-y", lambda: pytest.fail("drawn without data"), None)
    assert "Not yet computed" in shown[1][2].data
    assert [name for kind, name, _ in shown if kind == "glue"] == ["fig-y-data", "fig-y"]


def test_say_displays_markdown_and_glues_it(shown):
    book.say("note", "**η\\*** = 0.5")
    assert shown[0][0] == "display" and shown[0][2].data == "**η\\*** = 0.5"
    assert shown[1][:2] == ("glue", "note") and shown[1][2]["application/papermill.record/text/markdown"] == "**η\\*** = 0.5"


def test_table_wraps_long_text_and_notes_a_missing_frame():
    assert "the store holds none" in book.table(None).to_html()
    frame = pd.DataFrame({"short": ["a"], "long": ["x " * 50], "value": [0.123456]})
    html = book.table(frame).to_html()
    assert "white-space: normal" in html and "0.123" in html and "0.123456" not in html
    assert "white-space: normal" not in book.table(frame[["short", "value"]]).to_html()


def test_per_dataset_lists_the_grids_datasets_and_says_which_have_no_cells(monkeypatch):
    grids = [SimpleNamespace(datasets=["gaussians", "mnist"]), SimpleNamespace(datasets=["cifar10"])]
    monkeypatch.setattr(book, "experiment_grids", lambda name, profile: grids)
    chapter = book.Chapter("paper", ("power_law",), False)
    text = chapter.per_dataset(sweep_frame(), lambda dataset: f"{dataset} measured.")
    assert text.splitlines() == ["- **MNIST** (t = 0.925): mnist measured.", f"- **CIFAR-10**: {book.NOT_STORED}.",
                                 "- **Gaussians** (t = 0.8): gaussians measured."]  # fmt: skip
    assert chapter.per_dataset(None, lambda dataset: "x").count(book.NOT_STORED) == 3


# ----------------------------------------------------------------------------------------------------------
# findings: the chapters' sentences


FITS = pd.DataFrame([
    {"dataset": "mnist", "cells": "in regime", "alpha": 0.7149, "alpha low": 0.551, "alpha high": 0.862, "R^2": 0.934,
     "n cells": 12},
    {"dataset": "mnist", "cells": "all cells", "alpha": 0.41, "alpha low": float("nan"), "alpha high": float("nan"),
     "R^2": 0.5, "n cells": 30},
    {"dataset": "cifar10", "cells": "in regime", "alpha": float("nan"), "alpha low": float("nan"),
     "alpha high": float("nan"), "R^2": float("nan"), "n cells": 2},
])  # fmt: skip


def test_fit_text():
    assert findings.fit_text(FITS, "mnist", "in regime") == "α = 0.71 [0.55, 0.86], R² = 0.93 (12 cells)"
    assert findings.fit_text(FITS, "mnist", "all cells") == "α = 0.41 (no interval), R² = 0.50 (30 cells)"
    assert findings.fit_text(FITS, "cifar10", "in regime") == findings.NO_FIT
    assert findings.fit_text(FITS, "gaussians", "in regime") == findings.NO_FIT


def test_product_and_above_text():
    product = pd.DataFrame([{"dataset": "mnist", "cells": "in regime", "a (depth)": -1.02, "b (width)": -0.61,
                             "a - b": -0.41, "a - b low": -0.63, "a - b high": -0.08, "d*w consistent": False}])  # fmt: skip
    assert findings.product_text(product, "mnist") == (
        "a = -1.02, b = -0.61, a − b = -0.41 [-0.63, -0.08] (excludes 0: not a law in d·w alone)")
    above = pd.DataFrame({"dataset": ["mnist"] * 3, "seeds with a success above": [0, 2, None],
                          "largest success above / eta*": [1.0, 1.5, 1.25]})  # fmt: skip
    assert findings.above_text(above, "mnist") == "1 of 3 cells, largest ×1.5"


def test_ratio_and_range_text():
    ratios = pd.DataFrame({"dataset": "mnist", "variant": "full_input_lr", "depth": [1, 1, 4, 4],
                           "ratio": [0.5, 0.7, 0.9, None]})  # fmt: skip
    assert findings.ratio_text(ratios, "mnist", "full_input_lr") == (
        "median ×0.70 over 3 networks (×0.60 at depth 1, ×0.90 at depth 4)")
    summary = pd.DataFrame({"dataset": "mnist", "variant": ["t=0.90", "t=0.95", "4 epochs"],
                            "ratio median": [1.1, 0.8, 1.3]})  # fmt: skip
    assert findings.range_text(summary, "mnist", threshold=True) == "×0.80 (t=0.95) to ×1.10 (t=0.90)"
    assert findings.range_text(summary, "mnist", threshold=False) == "×1.30 for each of 4 epochs"


def test_regime_rule_and_verdict():
    from milr_core.fit import MIN_DEPTH

    assert findings.regime_rule().startswith(f"depth ≥ {MIN_DEPTH} and depth / width ≤ 1/")
    claim = SimpleNamespace(verdict="(c1) supported; (c2) undecided", key="mnist: eta* x lambda_1, R^2 = 0.9")
    assert findings.verdict(claim) == "**(c1) supported; (c2) undecided**: mnist: η\\* × λ₁, R² = 0.9"
    assert findings.verdict(SimpleNamespace(verdict="(f) not measured", key="")) == "**(f) not measured**"


def test_search_text():
    record = pd.Series({"eta_star": 0.4032, "bracket": [0.4032, 0.4086], "search.lr_bounds": [0.01, 10.0],
                        "search.rtol": 0.02, "depth": 4, "width": 256, "status": "converged", "n_probes": 9,
                        "largest_success_above": float("nan")})  # fmt: skip
    probes = pd.DataFrame({"lr": [1.0, 0.5, 0.45, 0.5040, 0.6048], "outcome": ["diverged", "diverged", "success",
                           "diverged", "diverged"], "above": [None, None, None, True, True]})  # fmt: skip
    assert findings.search_text(record, probes) == (
        "This search starts from the bracket [0.01, 10] with rtol = 0.02. For a network of depth 4, width 256 it returns "
        "η* = 0.403 (status `converged`), with the final bracket [0.4032, 0.4086], after 9 probes on its path "
        "(2 diverged, 1 success); after it, 2 probes above η* (×1.25, ×1.5): none of them succeeded.")


def test_condition_width_sentences():
    sweep = pd.DataFrame([{"dataset": "mnist", "min depth": 4, "max d/w": "1/16", "alpha": 0.723, "R^2": 0.955,
                           "n cells": 15}])  # fmt: skip
    assert findings.cutoff_text(sweep, "mnist", 4, "1/16") == "α = 0.72, R² = 0.95 (15 cells)"
    assert findings.cutoff_text(sweep, "mnist", 1, "none") == "no fit"
    residuals = pd.DataFrame({"dataset": "mnist", "censored": ["", "", "", "below"], "in_regime": [True, False, False, False],
                              "residual": [0.1, -1.0, 0.5, 9.0]})  # fmt: skip
    assert findings.residual_text(residuals, "mnist") == (
        "the 2 cells outside lie 0.75 from it (median |ln|), the 1 inside 0.10")  # the censored one is a bound: left out
    slopes = pd.DataFrame([{"dataset": "mnist", "depth": 1, "width slope": 0.18, "slope low": 0.13, "slope high": 0.25,
                            "value at narrowest": 1.54, "narrowest": 16, "value at widest": 4.22, "widest": 2048}])  # fmt: skip
    assert findings.depth_one_text(slopes, "mnist") == "+0.18 [+0.13, +0.25], η* from 1.54 at width 16 to 4.22 at 2048"
    assert findings.depth_one_text(slopes, "cifar10") == "no slope (too few widths)"


def test_preprocessing_and_curvature_sentences():
    effects = pd.DataFrame({"dataset": "mnist", "quantity": ["eta_star", "eta_star", "lambda_1"], "depth": [2, 1, 1],
                            "ratio median": [1.1, 0.87, 0.18]})  # fmt: skip
    assert findings.effect_text(effects, "mnist") == "η* ×0.87, ×1.10 (depths 1, 2); raw λ₁ ×0.18 (depths 1)"
    assert findings.effect_text(effects, "cifar10") == "no ratio yet"
    networks = pd.DataFrame({"late_lambda_1_eff": [1.0, 2.0, 8.0], "init_lambda_1_eff": [6.4, 50.0, 412.0],
                             "ratio": [0.9, 1.0, 1.2]})  # fmt: skip
    assert findings.late_text(networks) == (
        "Over the 3 networks and both pretraining lengths, the late product η_late·λ₁(θ_T) (effective) has median 2 "
        "and ranges over 1–8, while η*·λ₁(θ₀) ranges over 6.4–412. The late learning rate is a median 1 times η*.")
    check = pd.DataFrame({"sandwich": [True, True, False], "hessian_below_upper": [True, True, True],
                          "upper_over_ggn": [30.0, 36.0, 40.0], "ggn_over_lower": [3.0, 4.0, 5.0],
                          "trace_over_expected": [0.9, 1.0, 1.1]})  # fmt: skip
    assert findings.bounds_text(check).startswith("Our sandwich lower ≤ λ₁(G) ≤ upper holds in 2 of 3 networks, and "
                                                  "λ₁(H) stays below the upper bound (not proved) in 3. The upper bound "
                                                  "is a median 36 times")  # fmt: skip
    lanczos = pd.DataFrame({"networks": [10, 4], "converged": [1.0, 0.75], "residual max": [1e-5, 3e-4],
                            "dtypes": ["float32", "float32, float64"]})  # fmt: skip
    assert findings.eigen_text(lanczos) == ("Of the 14 stored eigenvalues, 1 did not reach their tolerance; the largest "
                                            "residual is 3.0e-04, and 1 of the table's groups needed float64 for some "
                                            "of their eigenvalues.")  # fmt: skip
    window = pd.DataFrame({"eta_lambda_eff": [1.0, 2.5, 3.9, 4.0, None]})
    assert findings.window_text(window).endswith("ranges over 1–4; 2 of them lie in the window.")


def test_trajectory_text():
    record = pd.Series({"depth": 2, "width": 512, "seed": 0, "lambda_1_eff": 352.0, "runs": [
        {"regime": "stable", "loss": [1.0, 0.5], "lambda_1": [352.0, 350.0], "lr": 1 / 352, "diverged_at": None},
        {"regime": "catapult", "loss": [1.0, 30.5, 0.2], "lambda_1": [352.0, 200.0, 101.0], "lr": 3 / 352,
         "diverged_at": None}]})  # fmt: skip
    text = findings.trajectory_text(record)
    assert "rises to 30.5 times its initial value by step 1" in text and "falls to 0.287 times" in text
    assert "below 2/η" in text and "ends at 0.4 times the loss of the run below the window" in text
    record["runs"][1]["diverged_at"] = 3
    assert "diverged" in findings.trajectory_text(record)


def test_beyond_the_paper_sentences():
    widths = pd.DataFrame({"dataset": ["mnist", "mnist", "cifar10", "cifar10"], "variant": ["standard", "mup"] * 2,
                           "width slope": [0.21, 0.19, -0.11, 0.10], "flattest": [False, True, False, True]})  # fmt: skip
    assert findings.width_slopes_text(widths) == ("The width slope at fixed depth, median over datasets: +0.15 under mup, "
                                                  "+0.05 under standard. The most often flattest is mup, on 2 of 2 "
                                                  "datasets.")  # fmt: skip
    summary = pd.DataFrame({"predicted": ["every cell", "every cell", "in regime"], "typical factor": [2.0, 2.2, 1.2],
                            "coverage": [0.9, 1.0, 1.0], "interval factor": [6.0, 7.0, 2.0]})  # fmt: skip
    assert findings.held_out_text(summary, 1) == (
        "Predicting every cell from the others, a held-out η* is typically off by a factor 2.1 (median over datasets), "
        "and 95% of the held-out cells lie in their 95% intervals, which reach a median factor 6.5 either way. The "
        "prediction far outside the grid carries 1 warning.")


def test_speculation_table_and_text():
    from milr_core.config import SearchConfig
    from milr_core.bisection import window_prober
    from milr_core.search import search_edges

    prober = window_prober([(0.02, 0.05), (0.09, 0.4), (0.7, 0.8)])
    runs = {k: search_edges(prober, [0], SearchConfig(lr_bounds=(0.001, 10.0), rtol=0.01), speculation=k) for k in (1, 3)}
    table = findings.speculation_table(runs)
    assert list(table["k"]) == [1, 3] and table["same ledger as k = 1"].all()
    assert table["rounds"].iloc[1] < table["rounds"].iloc[0]
    assert 0.09 <= table["η*"].iloc[0] < 0.4  # inside the middle window, although a success lies above it
    assert "is the same as at k = 1" in findings.speculation_text(table)


# ----------------------------------------------------------------------------------------------------------
# colab: MyST as plain Markdown


LINKS = colab.Links(
    url="https://github.com/owner/repo", branch="main",
    titles={"notebooks/01_first": "The first chapter", "book/reproduce": "Reproducing this book"},
    references={"iyer2023maximal": {"author": "Iyer, Gaurav and Hanin, Boris and Rolnick, David", "year": "2023",
                                    "eprint": "2212.07295"},
                "duo": {"author": "Bordelon, Blake and Pehlevan, Cengiz", "year": "2025"}},
)  # fmt: skip


def converted(markdown: str, figures: dict | None = None) -> str:
    chapter = colab.Context("02_test", 2, LINKS, figures or {})
    return colab.plain_markdown(markdown, chapter)


def test_admonitions_become_quotes():
    text = "```{admonition} Recomputing this chapter\n:class: note\n\nIt reads $x$,\nthen {cite:p}`iyer2023maximal`.\n```"
    assert converted(text) == ("> **Recomputing this chapter**\n>\n> It reads $x$,\n"
                               "> then ([Iyer et al., 2023](https://arxiv.org/abs/2212.07295)).")  # fmt: skip
    assert converted(":::{note}\nBody.\n:::") == "> **Note**\n>\n> Body."


def test_citations_documents_and_code_roles():
    assert converted("see {cite:t}`duo`") == "see [Bordelon and Pehlevan (2025)](https://github.com/owner/repo/blob/main/references.bib)"
    assert converted("chapter {doc}`01_first`") == (
        "chapter [The first chapter](https://colab.research.google.com/github/owner/repo/blob/main/notebooks/01_first.ipynb)")
    assert converted("{doc}`how <../book/reproduce>`") == "[how](https://github.com/owner/repo/blob/main/book/reproduce.md)"
    assert converted("{py:func}`milr_core.x`, {math}`a^2`") == "`milr_core.x`, $a^2$"
    assert converted("a role that wraps {doc}`01_first`\nand goes on") .startswith("a role that wraps [The first")


def test_figures_become_bold_captions_numbered_as_the_book_numbers_them():
    notebook = colab.nbformat.v4.new_notebook(cells=[
        colab.nbformat.v4.new_markdown_cell("See {numref}`fig-b`."),
        colab.nbformat.v4.new_markdown_cell("```{glue:figure} fig-a\n:name: fig-a\n:alt: words\n\nFirst. {glue:md}`fig-a-data`\n```"),
        colab.nbformat.v4.new_markdown_cell("```{glue:figure} fig-b\n:name: fig-b\n:alt: words\n\nSecond,\nas {numref}`fig-a`.\n{glue:md}`fig-b-data`\n```"),
    ])  # fmt: skip
    numbered = colab.Links(**{**LINKS.__dict__, "numbers": {"02_test": 2}})
    plain = colab.colab_notebook(notebook, "02_test", numbered)
    assert [c.source for c in plain.cells] == ["See Figure 2.2.", "**Figure 2.1.** First.", "**Figure 2.2.** Second, as Figure 2.1."]
    assert len({c["id"] for c in plain.cells}) == 3 and plain.cells[0]["id"] == colab.colab_notebook(notebook, "02_test", numbered).cells[0]["id"]
    assert colab.colab_notebook(notebook, "other", LINKS).cells[1].source == "**Figure 1.** First."  # outside the toc


def test_code_blocks_are_left_alone():
    assert converted("```text\n{glue:md}`x` stays\n```") == "```text\n{glue:md}`x` stays\n```"


@pytest.mark.parametrize("myst", [
    "a number {glue:md}`alpha` in prose",
    "```{dropdown} More\nhidden\n```",
    "{numref}`fig-unknown`",
    "{doc}`no_such_chapter`",
    "{cite:p}`nobody2000`",
    "```{admonition} open\nnever closed",
])  # fmt: skip
def test_myst_without_a_plain_form_is_refused(myst):
    with pytest.raises(colab.ColabError):
        converted(myst)


def test_parse_bib_and_authors():
    entries = colab.parse_bib("@misc{a1,\n  title = {The {ReLU} net},\n  author = {Hanin, Boris},\n  year = {2020}\n}\n")
    assert entries == {"a1": {"title": "The ReLU net", "author": "Hanin, Boris", "year": "2020"}}
    assert colab.authors(entries["a1"]) == "Hanin"
    toc = {"parts": [{"numbered": True, "chapters": [{"file": "notebooks/01_a.ipynb"}, {"file": "notebooks/02_b.ipynb"}]},
                     {"numbered": True, "chapters": [{"file": "notebooks/14_c.ipynb"}]},
                     {"chapters": [{"file": "book/reproduce"}]}]}  # fmt: skip
    assert colab.chapter_numbers(toc) == {"01_a": 1, "02_b": 2, "14_c": 3}  # numbered on across parts, as the book

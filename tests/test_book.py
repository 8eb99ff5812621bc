"""The book's sources: the chapter convention (``milr_core/book.py``), the Colab notebooks in sync with their
MyST sources, parameters and install cells, launch links, reproduce's build folder (tracked notebooks stay
inputs only) and its failure report, MathJax, the landing page."""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import skip_unless_required
import yaml

from milr_core.colab import chapter_numbers
from milr_core.repository import install_urls, set_install_url
from milr_core.reproduce import (
    HIDDEN_TAG, INJECTED_TAG, PROFILES, ReproduceError, colab_text, executed_dir, read_notebook, reproduce, strip_all,
    sync_all,
)  # fmt: skip

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "notebooks").glob("*.md"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
REPOSITORY_URL = CONFIG["repository"]["url"]


def cells(path: Path, url: str | None = None) -> list[tuple[str, str]]:
    """(type, source) of each cell, leaving out papermill's injected-parameters cell (a run's output, not source);
    with ``url``, the install cell's URL set to it (as ``milr reproduce`` writes it into the ``.ipynb``)."""
    notebook = read_notebook(path)
    return [
        (c.cell_type, set_install_url(c.source, url) if url and c.cell_type == "code" else c.source)
        for c in notebook.cells
        if INJECTED_TAG not in c.metadata.get("tags", [])
    ]


def toc_files(node) -> list[str]:
    """Every ``file:`` entry of the table of contents, root included."""
    if isinstance(node, dict):
        return [node[k] for k in ("root", "file") if k in node] + [f for v in node.values() for f in toc_files(v)]
    if isinstance(node, list):
        return [f for item in node for f in toc_files(item)]
    return []


def test_there_are_notebooks():
    assert SOURCES, "no notebooks/*.md"


def code_cells(path: Path, url: str | None = None) -> list[tuple[str, str]]:
    return [cell for cell in cells(path, url) if cell[0] == "code"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_pair_in_sync(source):
    """The tracked .ipynb is exactly what `milr reproduce` writes from the .md: the same code, plain Markdown."""
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing: run milr reproduce"
    assert code_cells(source, REPOSITORY_URL) == code_cells(paired)
    assert paired.read_text(encoding="utf-8") == colab_text(source), f"{paired.name} is stale: run milr reproduce"
    assert "formats" not in read_notebook(source).metadata.get("jupytext", {}), (
        f"{source.name} must not be a jupytext pair: Jupyter would overwrite the MyST source with plain Markdown"
    )


# ----------------------------------------------------------------------------------------------------------
# the chapter convention (milr_core/book.py's docstring)

FIGURE_CALL = re.compile(r"book\.figure\(\s*\"([\w-]+)\"")
FIGURE_DIRECTIVE = re.compile(r"^```\{glue:figure\} ([\w-]+)\n(?P<options>(?::[\w-]+:.*\n)*)\n(?P<caption>[\s\S]*?)\n```$",
                              re.MULTILINE)  # fmt: skip


def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_each_figure_is_shown_where_it_is_made_and_once_in_the_book(source):
    """A figure is made by a cell of its own, tagged remove-output (the book shows it through its {glue:figure}),
    and its {glue:figure}, with a name, alt text and the data sentence in its caption, comes next."""
    order = []
    for cell in read_notebook(source).cells:
        if cell.cell_type == "code":
            made = FIGURE_CALL.findall(cell.source)
            assert len(made) <= 1, f"{source.name}: one figure per cell, so that each shows before its caption: {made}"
            if made:
                assert "remove-output" in tags(cell), f"{source.name}: the cell making {made[0]} must be tagged remove-output"
                order.append(("made", made[0]))
        else:
            for match in FIGURE_DIRECTIVE.finditer(cell.source):
                name = match[1]
                options = dict(re.findall(r"^:([\w-]+): (.*)$", match["options"], re.MULTILINE))
                assert options.get("name") == name and len(options.get("alt", "")) >= 15, f"{source.name}: {name}'s options"
                assert match["caption"].rstrip().endswith(f"{{glue:md}}`{name}-data`"), f"{name}: the data sentence"
                order.append(("shown", name))
    pairs = [order[i : i + 2] for i in range(0, len(order), 2)]
    assert all(pair == [("made", name), ("shown", name)] for pair in pairs for name in [pair[0][1]]), (
        f"{source.name}: each figure's cell must come right before its caption: {order}"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_sentences_show_once_and_prose_holds_no_glue(source):
    """A cell that says a sentence shows its output only (remove-input); prose never glues a number."""
    notebook = read_notebook(source)
    for cell in notebook.cells:
        if cell.cell_type == "code" and "book.say(" in cell.source:
            assert "remove-input" in tags(cell), f"{source.name}: a cell calling book.say must be tagged remove-input"
        if cell.cell_type == "markdown":
            prose = FIGURE_DIRECTIVE.sub("", cell.source)
            assert "{glue" not in prose, f"{source.name}: a glue role in prose shows raw on Colab: use book.say"
    setup = [c for c in notebook.cells if c.cell_type == "code" and "book.chapter(" in c.source]
    assert len(setup) == 1, f"{source.name}: one setup call, book.chapter(...)"


def test_every_toc_chapter_is_numbered_for_colab_as_in_the_book():
    """Colab's figure numbers (C.N) take C from the table of contents, as the book does: every notebook listed
    in a numbered part has a number there, and the numbers run 1, 2, ... in toc order."""
    numbers = chapter_numbers(TOC)
    listed = [Path(f).stem for f in toc_files(TOC) if f.startswith("notebooks/")]
    assert sorted(numbers.values()) == list(range(1, len(numbers) + 1)) and set(numbers) <= set(listed)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_install_cell_installs_the_configured_repository(source):
    """The repository URL is set once, in _config.yml; the .ipynb Colab opens installs from exactly that."""
    urls = install_urls(nbformat.read(source.with_suffix(".ipynb"), as_version=4))
    assert urls, f"{source.with_suffix('.ipynb').name} has no install cell (%pip install ... git+URL)"
    assert set(urls) == {REPOSITORY_URL}, f"install cell URLs {urls}, _config.yml says {REPOSITORY_URL}: re-sync"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_parameters_cell_sets_profile(source):
    for path in (source, source.with_suffix(".ipynb")):
        tagged = [c for c in read_notebook(path).cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters', found {len(tagged)}"
        assigned = {
            target.id: node.value.value
            for node in ast.parse(tagged[0].source).body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert assigned.get("profile") in PROFILES, f"{path.name}: the parameters cell must set profile to one of {PROFILES}"
        assert assigned.get("profile") == "paper", f"{path.name}: Colab opens on the profile the book shows, paper"
        assert "compute" in assigned, f"{path.name}: the parameters cell must offer the compute switch"


def test_launch_buttons_are_configured():
    assert CONFIG["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert "notebooks/*.md" in CONFIG["exclude_patterns"], "the jupytext sources must not be rendered twice"
    assert CONFIG["execute"]["execute_notebooks"] == "off", "the book renders what milr reproduce executed"


def test_mathjax_is_local():
    """MathJax is served from the book's static files (installed from npm by scripts/install_mathjax.sh)."""
    sphinx = CONFIG["sphinx"]["config"]
    assert "://" not in sphinx["mathjax_path"] and sphinx["mathjax_path"].endswith(".js")
    assert "book/_static" in sphinx["html_static_path"]
    assert "offline_mathjax" in CONFIG["sphinx"]["local_extensions"]
    script = (ROOT / "scripts" / "install_mathjax.sh").read_text()
    assert "npm pack" in script and "book/_static/mathjax" in script


def test_build_outputs_are_ignored_by_git():
    """What a build writes (executed notebooks, the landing page, MathJax) never shows in git status."""
    if not (shutil.which("git") and (ROOT / ".git").exists()):
        pytest.skip("not a git checkout")
    outputs = [
        executed_dir(ROOT / "notebooks").relative_to(ROOT) / "02_power_law.ipynb",
        Path("book/_generated/verdicts.md"), Path("book/_generated/summary.svg"),
        Path("book/_static/mathjax/tex-chtml.js"), Path("build/lib/milr_core/__init__.py"),
    ]  # fmt: skip
    for path in outputs:
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", path.as_posix()], cwd=ROOT).returncode == 0
        assert ignored, f"{path} is not git-ignored"


def test_toc_notebooks_are_committable_ipynb():
    notebooks = [f for f in toc_files(TOC) if f.startswith("notebooks/")]
    assert notebooks, "the table of contents lists no notebook"
    for entry in notebooks:
        assert entry.endswith(".ipynb"), f"toc entry {entry} must name the .ipynb, so its Colab link does"
        path = ROOT / entry
        assert path.exists() and path.with_suffix(".md").exists(), f"{entry} or its .md source is missing"
        if shutil.which("git") and (ROOT / ".git").exists():
            ignored = subprocess.run(["git", "check-ignore", "-q", entry], cwd=ROOT).returncode == 0
            assert not ignored, f"{entry} is git-ignored, so Colab could not open it"


@pytest.mark.slow  # reads the built book, so it runs after the build in `make test`
def test_built_launch_links_end_in_ipynb():
    pages = sorted((ROOT / "_build" / "html" / "notebooks").glob("*.html"))
    if not pages:
        skip_unless_required("no built book at _build/html: run bash scripts/build_book.sh")
    for page in pages:
        links = re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', page.read_text())
        assert links, f"{page.name} has no Colab launch link"
        assert all(link.endswith(".ipynb") for link in links), f"{page.name}: {links}"


HEADER = "---\nkernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n"


def write_notebook(notebooks: Path, name: str, body: str, url: str = "https://example.org/upstream/milr") -> None:
    """A tiny MyST notebook: an install cell, a parameters cell setting profile, then ``body``."""
    install = f'```{{code-cell}} ipython3\nimport sys\nif "google.colab" in sys.modules:\n    %pip install -q git+{url}\n```\n\n'
    params = '```{code-cell} ipython3\n:tags: [parameters]\n\nprofile = "smoke"\n```\n\n'
    (notebooks / name).write_text(f"{HEADER}\n{install}{params}```{{code-cell}} ipython3\n{body}\n```\n")


def a_checkout(tmp_path: Path, url: str) -> Path:
    """A minimal checkout (``_toc.yml``, ``_config.yml`` with ``url``) with an empty notebooks folder."""
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (tmp_path / "_config.yml").write_text(f"repository:\n  url: {url}\n")
    (tmp_path / "notebooks").mkdir()
    return tmp_path / "notebooks"


def test_sync_writes_the_configured_url_and_is_idempotent(tmp_path):
    notebooks = a_checkout(tmp_path, "https://example.org/fork/milr")
    write_notebook(notebooks, "01_a.md", "x = 1")
    assert sync_all(notebooks) == [notebooks / "01_a.ipynb"]
    assert install_urls(nbformat.read(notebooks / "01_a.ipynb", as_version=4)) == ["https://example.org/fork/milr"]
    before = (notebooks / "01_a.ipynb").read_bytes()
    assert sync_all(notebooks) == [], "a second sync of an unchanged pair must not rewrite the .ipynb"
    assert (notebooks / "01_a.ipynb").read_bytes() == before


@pytest.mark.slow
def test_reproduce_executes_into_the_build_folder_and_names_the_failing_cell(tmp_path, monkeypatch):
    monkeypatch.delenv("MILR_COMPUTE", raising=False)
    notebooks = a_checkout(tmp_path, "https://example.org/upstream/milr")
    write_notebook(notebooks, "01_ok.md", f"import os, sys\nassert sys.executable == {sys.executable!r}\nprint(profile, os.environ.get('MILR_COMPUTE'))")
    write_notebook(notebooks, "02_fails.md", "x = 1\n1 / 0")
    sync_all(notebooks)
    tracked = {p.name: p.read_bytes() for p in notebooks.iterdir()}
    out = executed_dir(notebooks)
    assert out == tmp_path / "_build" / "executed" / "notebooks"
    with pytest.raises(ReproduceError, match=r"02_fails\.ipynb failed in cell \d+[\s\S]*1 / 0[\s\S]*ZeroDivisionError"):
        reproduce(profile="paper", notebooks_dir=notebooks, compute=False)

    assert {p.name: p.read_bytes() for p in notebooks.iterdir()} == tracked, "reproduce modified a tracked notebook"
    assert "MILR_COMPUTE" not in os.environ  # the kernels' setting does not outlive the run
    executed = nbformat.read(out / "01_ok.ipynb", as_version=4)
    assert any("paper 0" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    injected = [c for c in executed.cells if INJECTED_TAG in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'profile = "paper"' in injected[0].source
    original = [c for c in executed.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(original) == 1 and HIDDEN_TAG in original[0].metadata["tags"], "the page must show the parameters once"
    failed = nbformat.read(out / "02_fails.ipynb", as_version=4)
    assert any(o.get("ename") == "ZeroDivisionError" for c in failed.cells for o in c.get("outputs", []))
    assert strip_all(notebooks) == [notebooks / "01_ok.ipynb", notebooks / "02_fails.ipynb"]
    for name in ("01_ok", "02_fails"):
        assert code_cells(notebooks / f"{name}.md") == code_cells(notebooks / f"{name}.ipynb")


@pytest.mark.slow  # after `make test`'s reproduce and book build
def test_a_build_leaves_the_tracked_notebooks_unchanged():
    """No tracked .ipynb differs from git's copy unless its .md source does (then the sync is the change)."""
    if not (shutil.which("git") and (ROOT / ".git").exists()):
        pytest.skip("not a git checkout")
    changed = subprocess.run(
        ["git", "diff", "--name-only", "--", "notebooks"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    rewritten = [f for f in changed if f.endswith(".ipynb") and f.removesuffix(".ipynb") + ".md" not in changed]
    assert not rewritten, f"tracked notebooks modified although their sources are not: {rewritten}"


@pytest.mark.slow  # reads the built book
def test_built_pages_show_the_parameters_once():
    pages = sorted((ROOT / "_build" / "html" / "notebooks").glob("*.html"))
    if not pages:
        skip_unless_required("no built book at _build/html: run bash scripts/build_book.sh")
    for page in pages:
        html = page.read_text()
        assert html.count("tag_injected-parameters") == 1, f"{page.name}: papermill's parameters cell must show once"
        assert "tag_parameters" not in html, f"{page.name}: the notebook's own parameters cell shows beside papermill's"


@pytest.mark.slow  # reads the built book
def test_built_landing_page_has_the_verdicts_and_no_cdn():
    index = ROOT / "_build" / "html" / "book" / "intro.html"
    if not index.exists():
        skip_unless_required("no built book at _build/html: run bash scripts/build_book.sh")
    html = index.read_text()
    assert "milr-verdicts" in html and "summary.svg" in html
    for page in (ROOT / "_build" / "html").rglob("*.html"):
        text = page.read_text()
        assert not re.search(r"cdn\.jsdelivr|mathjax@|cdnjs\.cloudflare", text), f"{page}: loads from a CDN"
        if "mathjax" in text.lower():
            assert re.search(r'src="[./]*_static/mathjax/tex-chtml\.js', text), f"{page}: MathJax not from _static"


def test_committed_notebooks_are_inputs_only():
    """What git holds (the index), not the working copy, which ``milr reproduce`` fills with outputs."""
    if not (shutil.which("git") and (ROOT / ".git").exists()):
        pytest.skip("not a git checkout")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        entry = path.relative_to(ROOT).as_posix()
        staged = subprocess.run(["git", "show", f":{entry}"], cwd=ROOT, capture_output=True, text=True)
        if staged.returncode:  # not tracked yet
            continue
        notebook = nbformat.reads(staged.stdout, as_version=4)
        assert not any(c.get("outputs") for c in notebook.cells if c.cell_type == "code"), (
            f"{entry} is committed with outputs: run strip_all() (milr_core.reproduce) before committing"
        )
        assert not any(INJECTED_TAG in c.metadata.get("tags", []) for c in notebook.cells), f"{entry}: papermill cell"


# ----------------------------------------------------------------------------- the landing page


def fake_claims():
    import pandas as pd

    return pd.DataFrame([
        {"claim": "(a) eta* is a power of depth x width", "the paper says": "", "our protocol": "",
         "we measured": "cifar10: alpha = 0.256 [0.226, 0.285], R^2 = 0.340 (29 cells); mnist: alpha = 0.4 [0.3, 0.5]",
         "verdict": "not supported"},
        {"claim": "(a-ii) the law needs a smaller input-layer LR", "the paper says": "", "our protocol": "",
         "we measured": "mnist: input LR x0.1 alpha = -0.1 [-0.2, 0.1]", "verdict": "supported"},
        {"claim": "(c) eta* and lambda_1 are closely, not inversely, related", "the paper says": "", "our protocol": "",
         "we measured": "Spearman rho = -0.77, slope of log eta* on log lambda_1 = -0.78", "verdict": "mixed"},
        {"claim": "(g) milr predict: eta* of a held-out cell [extension, ours]", "the paper says": "", "our protocol": "",
         "we measured": "mnist: mean |log error| 0.68 (x1.98), 94% of 32 inside intervals of median x/÷ 6.27",
         "verdict": "not measured"},
    ])  # fmt: skip


def fake_power_law():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = [
        {"dataset": name, "depth": d, "width": w, "seed": s, "threshold": t,
         "eta_star": float(2.0 * (d * w) ** -0.5 * np.exp(rng.normal(0, 0.1))) if (d, w, s) != (4, 256, 1) else np.nan}
        for name, t in (("mnist", 0.925), ("gaussians", 0.8)) for d in (1, 2, 4) for w in (16, 64, 256) for s in (0, 1)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_landing_key_numbers_and_unicode():
    from milr_core import landing

    claims = fake_claims()
    keys = [landing.key_number(row) for _, row in claims.iterrows()]
    assert keys[0] == "CIFAR-10: alpha = 0.256 [0.226, 0.285]"
    assert keys[1] == "MNIST: input LR x0.1 alpha = -0.1 [-0.2, 0.1]"
    assert keys[2] == "Spearman rho = -0.77"  # no interval: the first clause
    assert keys[3] == "MNIST: mean |log error| 0.68 (x1.98)"  # long: cut at its first comma
    assert landing.unicode_math("eta* x lambda_1, R^2 >= 0.9, alpha, x0.1, -0.2") == "η* × λ₁, R² ≥ 0.9, α, ×0.1, −0.2"
    with_column = claims.assign(**{"key number": ["α = 1 [0, 2]", "", "ρ = 0.5", "x"]})
    assert landing.key_number(with_column.iloc[0]) == "α = 1 [0, 2]"  # the dedicated column wins when present
    assert landing.key_number(with_column.iloc[1]).startswith("MNIST: input LR")  # an empty one does not


def test_landing_verdict_table_links_every_claim_to_its_chapter():
    from milr_core import landing

    table = landing.verdicts_table(fake_claims())
    assert table.startswith("```{list-table}") and ":class: milr-verdicts" in table and table.rstrip().endswith("```")
    for chapter in ("02_power_law", "04_input_layer", "07_sharpness", "12_predict"):
        assert f"</notebooks/{chapter}>" in table
    assert "η\\* is a power of depth × width" in table and "eta*" not in table
    for chapter in set(landing.CHAPTERS.values()):
        assert (ROOT / "notebooks" / f"{chapter}.md").exists(), f"landing.CHAPTERS names a missing chapter {chapter}"


def test_write_landing_writes_the_table_and_an_svg(tmp_path, monkeypatch):
    import types

    import pandas as pd

    from milr_core import landing

    claims = types.ModuleType("milr_core.claims")
    claims.claims_table = lambda profile: fake_claims()
    experiments = types.ModuleType("milr_core.experiments")
    experiments.run_experiment = lambda name, profile: fake_power_law()
    experiments.coverage = lambda profile: pd.DataFrame([
        {"experiment": "power_law", "grid": "g", "cells": 40, "stored": 30, "widths": "16, 64, 256", "depths": "1, 2, 4",
         "devices": "cpu: x86_64 (torch 2.13.0+cpu)", "hours": 1.5},
        {"experiment": "sharpness", "grid": "h", "cells": 10, "stored": 10, "widths": "2048", "depths": "16",
         "devices": "cuda: H200 (torch 2.13.0)", "hours": 0.5},
    ])  # fmt: skip
    monkeypatch.setitem(sys.modules, "milr_core.claims", claims)
    monkeypatch.setitem(sys.modules, "milr_core.experiments", experiments)
    landing.write_landing("paper", tmp_path / "generated")
    text = (tmp_path / "generated" / "verdicts.md").read_text()
    assert "40 of 50 grid cells (80%) across 2 experiments, widths 16–2048, depths 1–16" in text
    assert "cuda: H200 (torch 2.13.0)" in text and "2.0 hours" in text
    svg = (tmp_path / "generated" / "summary.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    first = svg
    landing.write_landing("paper", tmp_path / "generated")
    assert (tmp_path / "generated" / "summary.svg").read_text() == first, "the figure must be reproducible byte for byte"

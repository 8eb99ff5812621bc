"""The book's sources: notebook pairs in sync, parameters cells, launch links, and reproduce's failure report."""

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

from milr_core.reproduce import INJECTED_TAG, PROFILES, ReproduceError, read_notebook, reproduce, strip_all

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "notebooks").glob("*.md"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def cells(path: Path) -> list[tuple[str, str]]:
    """(type, source) of each cell, leaving out papermill's injected-parameters cell (a run's output, not source)."""
    notebook = read_notebook(path)
    return [(c.cell_type, c.source) for c in notebook.cells if INJECTED_TAG not in c.metadata.get("tags", [])]


def toc_files(node) -> list[str]:
    """Every ``file:`` entry of the table of contents, root included."""
    if isinstance(node, dict):
        return [node[k] for k in ("root", "file") if k in node] + [f for v in node.values() for f in toc_files(v)]
    if isinstance(node, list):
        return [f for item in node for f in toc_files(item)]
    return []


def test_there_are_notebooks():
    assert SOURCES, "no notebooks/*.md"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_pair_in_sync(source):
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing: run milr reproduce (or jupytext --sync) and commit it"
    assert cells(source) == cells(paired), f"{source.name} and {paired.name} differ: re-sync them"


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


def test_launch_buttons_are_configured():
    assert CONFIG["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert "notebooks/*.md" in CONFIG["exclude_patterns"], "the jupytext sources must not be rendered twice"
    assert CONFIG["execute"]["execute_notebooks"] == "off", "the book renders what milr reproduce executed"


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


@pytest.mark.slow
def test_reproduce_names_the_failing_notebook_and_cell_then_strips(tmp_path, monkeypatch):
    monkeypatch.delenv("MILR_COMPUTE", raising=False)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    header = "---\nkernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n"

    def write(name: str, body: str) -> None:
        params = '```{code-cell} ipython3\n:tags: [parameters]\n\nprofile = "smoke"\n```\n\n'
        (notebooks / name).write_text(f"{header}\n{params}```{{code-cell}} ipython3\n{body}\n```\n")

    write("01_ok.md", f"import os, sys\nassert sys.executable == {sys.executable!r}\nprint(profile, os.environ.get('MILR_COMPUTE'))")
    write("02_fails.md", "x = 1\n1 / 0")
    with pytest.raises(ReproduceError, match=r"02_fails\.ipynb failed in cell \d+[\s\S]*1 / 0[\s\S]*ZeroDivisionError"):
        reproduce(profile="paper", notebooks_dir=notebooks, compute=False)

    executed = nbformat.read(notebooks / "01_ok.ipynb", as_version=4)
    assert any("paper 0" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "MILR_COMPUTE" not in os.environ  # the kernels' setting does not outlive the run
    assert strip_all(notebooks) == [notebooks / "01_ok.ipynb", notebooks / "02_fails.ipynb"]
    for name in ("01_ok", "02_fails"):
        stripped = nbformat.read(notebooks / f"{name}.ipynb", as_version=4)
        assert all(not c.get("outputs") for c in stripped.cells)
        assert len(stripped.cells) == len(read_notebook(notebooks / f"{name}.md").cells)
        assert cells(notebooks / f"{name}.md") == cells(notebooks / f"{name}.ipynb")


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

"""Colab from the first cell: the repository URL, the committed store fetched outside a checkout, and a
Colab-like run of every chapter (a fresh venv, a non-editable install of this working tree, each tracked
``.ipynb`` executed by papermill at its default profile from a folder outside the checkout, with no data,
then rendered by nbconvert as a plain Jupyter shows it).

The fast tests fetch ``results/`` from this checkout over ``file://`` (a shallow, sparse fetch: about a
second). The slow one builds a wheel of the working tree's package (uncommitted changes included) and
fetches the store git holds at HEAD (``MILR_REPOSITORY=file://<checkout>``): records not yet committed
are not in what it reads.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
from nbconvert import HTMLExporter
import yaml

from milr_core import repository
from milr_core.repository import RepositoryError, committed_store, repository_source, split_ref

ROOT = Path(__file__).resolve().parent.parent
CONFIG_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RAW_MYST = ("{glue", "{admonition", "{cite", "{doc}", "{numref}", ":::")

needs_git_checkout = pytest.mark.skipif(
    not (shutil.which("git") and (ROOT / ".git").exists()), reason="needs git and a git checkout"
)


def committed_files(prefix: str) -> list[str]:
    """The files git's HEAD holds under ``prefix``."""
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "HEAD", prefix], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return listing.stdout.split()


@pytest.fixture
def outside(tmp_path, monkeypatch) -> Path:
    """A working directory outside any checkout, an empty cache, no MILR_RESULTS; returns the directory."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MILR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MILR_RESULTS", raising=False)
    monkeypatch.delenv("MILR_REPOSITORY", raising=False)
    assert repository.checkout_root() is None, f"{work} lies inside a checkout"
    return work


def test_the_url_comes_from_the_config_in_a_checkout(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("MILR_REPOSITORY", raising=False)
    assert repository.repository_url() == CONFIG_URL == repository.REPOSITORY_URL
    monkeypatch.setenv("MILR_REPOSITORY", "https://example.org/fork/milr@v1")
    assert repository_source() == ("https://example.org/fork/milr", "v1")


def test_split_ref():
    assert split_ref("https://github.com/o/r") == ("https://github.com/o/r", None)
    assert split_ref("https://github.com/o/r@abc123") == ("https://github.com/o/r", "abc123")
    assert split_ref("file:///tmp/x/") == ("file:///tmp/x", None)
    assert split_ref("https://user@host.org/o/r") == ("https://user@host.org/o/r", None)


def test_in_a_checkout_the_store_is_its_results_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT / "notebooks")
    monkeypatch.delenv("MILR_RESULTS", raising=False)
    assert committed_store("paper") == ROOT / "results" / "paper"
    monkeypatch.setenv("MILR_RESULTS", str(tmp_path))
    assert committed_store("paper") == tmp_path / "paper"


@needs_git_checkout
def test_outside_a_checkout_the_paper_store_is_fetched_once(outside, monkeypatch):
    monkeypatch.setenv("MILR_REPOSITORY", f"file://{ROOT}")
    store = committed_store("paper")
    assert store.is_dir() and store.parts[-2:] == ("results", "paper")
    assert Path(os.environ["MILR_CACHE"]) / "repository" in store.parents
    fetched = sorted(p.relative_to(store.parent.parent).as_posix() for p in store.rglob("*") if p.is_file())
    assert fetched == sorted(committed_files("results/paper")), "the fetched store is not the committed one"

    def no_network(*args, **kwargs):
        raise AssertionError("a second call fetched again")

    monkeypatch.setattr(repository, "git", no_network)
    assert committed_store("paper") == store


def test_outside_a_checkout_the_smoke_store_is_local_and_never_fetched(outside, monkeypatch):
    monkeypatch.setenv("MILR_REPOSITORY", "file:///nonexistent")
    monkeypatch.setattr(repository, "git", lambda *a, **k: (_ for _ in ()).throw(AssertionError("fetched")))
    assert committed_store("smoke") == outside / "results" / "smoke"


@needs_git_checkout
def test_a_failed_fetch_warns_and_falls_back_to_the_working_directory(outside, monkeypatch):
    monkeypatch.setenv("MILR_REPOSITORY", f"file://{outside}/no-such-repository")
    with pytest.warns(UserWarning, match="could not be fetched"):
        assert committed_store("paper") == outside / "results" / "paper"


def test_without_any_source_the_url_is_an_error(outside, monkeypatch):
    monkeypatch.setattr(repository, "installed_from", lambda: None)
    monkeypatch.setattr(repository, "package_checkout", lambda: None)
    with pytest.raises(RepositoryError, match="MILR_REPOSITORY"):
        repository.repository_url()


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / "python"


# Run in the fresh venv: each chapter executed as Colab would (papermill, the "colab" kernel, from a folder
# outside the checkout); prints the seconds each took, as JSON.
DRIVER = r"""
import json, sys, time
from pathlib import Path

import papermill

out, work, seconds = Path(sys.argv[1]), sys.argv[2], {}
for path in map(Path, sys.argv[3:]):
    start = time.perf_counter()
    papermill.execute_notebook(str(path), str(out / path.name), kernel_name="colab", cwd=work, progress_bar=False)
    seconds[path.stem] = round(time.perf_counter() - start, 1)
print(json.dumps(seconds))
"""


def package_copy(target: Path) -> Path:
    """The package's files of the working tree (tracked or not, but not ignored) copied to ``target``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", "pyproject.toml", "README.md",
                             "LICENSE", "milr_core"], cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    for name in listed.stdout.split():
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def figures_in_the_book(chapter: Path) -> int:
    """How many figures the book shows for a chapter: the {glue:figure} directives of its MyST source."""
    return len(re.findall(r"^```\{glue:figure\}", chapter.with_suffix(".md").read_text(encoding="utf-8"), re.MULTILINE))


@pytest.mark.slow
@needs_git_checkout
def test_every_chapter_shows_on_colab_what_the_book_shows(tmp_path):
    """Colab's path for every chapter: a non-editable install, the tracked .ipynb at its default profile (paper),
    outside the checkout and with no data, then rendered by nbconvert: every figure the book shows is an <img>
    there, with its numbered caption, no MyST shows raw and no cell failed.

    The fresh venv sees this environment's packages (torch, the Jupyter stack) through a .pth file, but not
    its editable milr_core: the one imported is the wheel built here from the working tree. The store can
    only come from the one fetched from MILR_REPOSITORY (this checkout's HEAD).
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv_python(venv)
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    (site / "parent_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # Built by this environment's setuptools (the venv's own may be older); installed with --ignore-installed, as
    # pip sees this environment's editable milr_core through the .pth file and would call it satisfied.
    source, wheels = package_copy(tmp_path / "source"), tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                            str(wheels), str(source)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("milr_core-*.whl")
    installed = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                                str(wheel)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr

    work, cache, out, home = tmp_path / "colab", tmp_path / "cache", tmp_path / "executed", tmp_path / "home"
    for folder in (work, out, home):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILR_") and k not in ("PYTHONPATH", "JUPYTER_PATH")}
    env.update(MILR_REPOSITORY=f"file://{ROOT}", MILR_CACHE=str(cache), MILR_OFFLINE="1", HOME=str(home),
               OMP_NUM_THREADS="1", JUPYTER_PATH=str(tmp_path / "jupyter" / "share" / "jupyter"))  # fmt: skip
    where = subprocess.run([python, "-c", "import milr_core; print(milr_core.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True)  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(site), f"imported {where.stdout}, not the installed package"
    subprocess.run([python, "-m", "ipykernel", "install", "--prefix", str(tmp_path / "jupyter"), "--name", "colab"],
                   env=env, check=True, capture_output=True)  # fmt: skip

    run = subprocess.run([python, "-c", DRIVER, str(out), str(work), *map(str, CHAPTERS)], cwd=work, env=env,
                         capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert run.returncode == 0, f"a chapter failed as on Colab:\n{run.stderr[-6000:]}"
    print("seconds per chapter, executed:", run.stdout.strip().splitlines()[-1])
    for chapter in CHAPTERS:
        notebook = nbformat.read(out / chapter.name, as_version=4)
        assert not [o for c in notebook.cells for o in c.get("outputs", []) if o["output_type"] == "error"], chapter.name
        html, _ = HTMLExporter().from_notebook_node(notebook)  # as a plain Jupyter (and nbconvert) shows it
        figures = figures_in_the_book(chapter)
        assert html.count("<img") >= figures, f"{chapter.name}: {html.count('<img')} images, the book shows {figures}"
        captions = re.findall(r"<strong>Figure \d+\.\d+\.</strong>", html)
        assert len(captions) == figures, f"{chapter.name}: {len(captions)} numbered captions for {figures} figures"
        raw = [markup for markup in RAW_MYST if markup in html]
        assert not raw, f"{chapter.name}: raw MyST on the page: {raw}"
        shown = " ".join(str(o.get("data", {}).get("text/markdown", "")) + str(o.get("text", ""))
                         for c in notebook.cells for o in c.get("outputs", []))  # fmt: skip
        assert "Traceback" not in shown, f"{chapter.name}: {shown[-2000:]}"
    assert list(cache.glob("repository/*/results/paper/*.json")), "the committed store was not fetched into the cache"
    assert not (work / "results" / "paper").exists(), "a chapter fell back to an empty local store"

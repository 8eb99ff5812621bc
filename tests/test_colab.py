"""Colab from the first cell: the repository URL, the committed store fetched outside a checkout, and a
Colab-like run of one chapter (a fresh venv, a non-editable install from a git URL of this checkout, the
notebook executed by papermill at profile ``paper`` from a folder outside the checkout, with no data).

The fast tests fetch ``results/`` from this checkout over ``file://`` (a shallow, sparse fetch: about a
second). The slow one installs the package from ``git+file://<checkout>``, that is from its last
*commit*: uncommitted changes are not in what it tests.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
import yaml

from milr_core import repository
from milr_core.repository import RepositoryError, committed_store, repository_source, split_ref

ROOT = Path(__file__).resolve().parent.parent
CONFIG_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
CHAPTER = ROOT / "notebooks" / "02_power_law.ipynb"

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


@pytest.mark.slow
@needs_git_checkout
def test_a_chapter_runs_as_on_colab(tmp_path):
    """Colab's path: `%pip install git+URL` (non-editable, from git), then the notebook at profile paper.

    The fresh venv sees this environment's packages (torch, the Jupyter stack) through a .pth file, but
    not its editable milr_core: the one imported is the one pip installed from the git URL. The notebook
    runs from a folder outside the checkout with no data (MILR_DATA unset, offline, an empty cache), so
    its figure can only come from the store fetched from MILR_REPOSITORY.

    Needs, from the engine: ``run_experiment``/``coverage`` reading ``repository.committed_store(profile)``
    (see the report of the lead's integration), and records read without the data (the data manifest).
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv_python(venv)
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    (site / "parent_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", f"git+file://{ROOT}"], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stdout + install.stderr

    work, cache = tmp_path / "colab", tmp_path / "cache"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILR_") and k not in ("PYTHONPATH", "JUPYTER_PATH")}
    env.update(MILR_REPOSITORY=f"file://{ROOT}", MILR_CACHE=str(cache), MILR_OFFLINE="1", MILR_COMPUTE="0",
               HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1", JUPYTER_PATH=str(tmp_path / "jupyter" / "share" / "jupyter"))  # fmt: skip
    where = subprocess.run([python, "-c", "import milr_core, importlib.metadata as m; print(milr_core.__file__); "
                            "print(m.distribution('milr_core').read_text('direct_url.json'))"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    assert Path(where[0]).is_relative_to(site), f"imported {where[0]}, not the installed package"
    assert json.loads(where[1]).get("vcs_info", {}).get("vcs") == "git"
    subprocess.run([python, "-m", "ipykernel", "install", "--prefix", str(tmp_path / "jupyter"), "--name", "colab"],
                   env=env, check=True, capture_output=True)  # fmt: skip

    executed = tmp_path / "executed.ipynb"
    run = subprocess.run(
        [python, "-m", "papermill", str(CHAPTER), str(executed), "-p", "profile", "paper", "-k", "colab", "--cwd", str(work)],
        cwd=work, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, f"the chapter failed as on Colab:\n{run.stderr[-6000:]}"
    notebook = nbformat.read(executed, as_version=4)
    images = [o for c in notebook.cells for o in c.get("outputs", [])  # shown, or glued (the mime type prefixed)
              if any(key.endswith(("image/png", "image/svg+xml")) for key in o.get("data", {}))]
    assert images, "the chapter drew no figure at profile paper outside the checkout"
    assert list(cache.glob("repository/*/results/paper/*.json")), "the committed store was not fetched into the cache"
    assert not (work / "results" / "paper").exists(), "the chapter fell back to an empty local store"

"""Where the companion's repository is, and its committed result store for a package installed outside a checkout.

**The repository URL is set in one place**: ``repository.url`` in ``_config.yml`` at the top of the
repository. The book's launch and repository buttons read it there; ``milr reproduce`` (through
``set_install_url``) writes it into the install cell of every ``notebooks/*.ipynb``, the files Colab
opens; and the library finds it with ``repository_url()`` (``REPOSITORY_URL`` is the same, read on
access). A fork changes that one line and runs ``milr reproduce`` to rewrite the notebooks' install cells.

``repository_url()`` is, in order:

1. ``$MILR_REPOSITORY`` (any URL git understands, ``file://`` included, optionally ``URL@REF``);
2. ``repository.url`` of the checkout's ``_config.yml`` (found from the working directory upwards by
   its ``_toc.yml``, or next to this package for an editable install);
3. the URL this package was installed from, when pip installed it from git (``%pip install
   git+URL`` on Colab): pip records it, and the commit, in the distribution's ``direct_url.json``.

**The committed store.** ``committed_store(profile)`` is the folder holding the profile's results: in a
checkout ``results/<profile>/`` there (``$MILR_RESULTS/<profile>`` when that is set); outside one (a
``pip install`` on Colab), for a profile the repository commits (``paper``), the repository's
``results/`` fetched once with git (a shallow, sparse, blob-less fetch of the commit the package was
installed from when pip says which, else of the default branch) into
``$MILR_CACHE/repository/`` (default ``~/.cache/milr/repository/``). Delete that folder to fetch again.
Other profiles (``smoke``, computed live and never committed) use ``results/<profile>`` in the working
directory, as does any profile whose fetch fails (with a warning saying why).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

REPOSITORY_ENV = "MILR_REPOSITORY"
RESULTS_ENV = "MILR_RESULTS"
CACHE_ENV = "MILR_CACHE"
DISTRIBUTION = "milr_core"
COMMITTED_PROFILES = ("paper",)  # the stores under results/ that git tracks (.gitignore leaves out results/smoke)
FETCH_TIMEOUT_S = 600
# The install cell of a notebook: `%pip install ... git+URL` (the URL is what `set_install_url` rewrites).
INSTALL_URL = re.compile(r"(%pip install\b[^\n]*?\bgit\+)(\S+)")


class RepositoryError(RuntimeError):
    """The repository (its URL, or a fetch of its results) could not be had; the message says why."""


def checkout_root(start: Path | None = None) -> Path | None:
    """The top of the checkout that holds ``start`` (default: the working directory): the first folder
    upwards with a ``_toc.yml``; None outside a checkout."""
    start = Path.cwd() if start is None else Path(start).resolve()
    for folder in [start, *start.parents]:
        if (folder / "_toc.yml").is_file():
            return folder
    return None


def package_checkout() -> Path | None:
    """The checkout this package's source lies in (an editable install), else None."""
    top = Path(__file__).resolve().parent.parent
    return top if (top / "_toc.yml").is_file() and (top / "_config.yml").is_file() else None


def configured_url(root: Path) -> str | None:
    """``repository.url`` of ``root/_config.yml``, or None when it has none."""
    import yaml

    path = Path(root) / "_config.yml"
    if not path.is_file():
        return None
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    url = (config.get("repository") or {}).get("url")
    return str(url).rstrip("/") if url else None


def installed_from() -> tuple[str, str | None] | None:
    """(url, commit) pip recorded when it installed this package from git (PEP 610), else None."""
    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    record = json.loads(text)
    vcs = record.get("vcs_info") or {}
    if vcs.get("vcs") != "git" or not record.get("url"):
        return None
    return record["url"].rstrip("/"), vcs.get("commit_id")


def split_ref(url: str) -> tuple[str, str | None]:
    """``URL@REF`` -> (URL, REF); a URL without a trailing ``@REF`` -> (URL, None)."""
    head, at, ref = url.rpartition("@")
    if at and head and "/" not in ref and ref and "://" in head:
        return head.rstrip("/"), ref
    return url.rstrip("/"), None


def repository_source() -> tuple[str, str | None]:
    """(url, ref) of the repository: see the module docstring for the order. Raises RepositoryError."""
    if os.environ.get(REPOSITORY_ENV):
        url, ref = split_ref(os.environ[REPOSITORY_ENV])
        installed = installed_from()
        if ref is None and installed and installed[0] == url:
            ref = installed[1]  # the same repository pip installed from: its commit
        return url, ref
    for root in (checkout_root(), package_checkout()):
        if root is not None and (url := configured_url(root)):
            return url, None
    installed = installed_from()
    if installed:
        return installed
    raise RepositoryError(
        f"the repository's URL is unknown: this is no checkout and pip did not install {DISTRIBUTION} from git; "
        f"set {REPOSITORY_ENV} (for example {REPOSITORY_ENV}=https://github.com/OWNER/REPO)"
    )


def repository_url() -> str:
    """The repository's URL (see the module docstring). Raises RepositoryError when none is known."""
    return repository_source()[0]


def __getattr__(name: str) -> str:
    if name == "REPOSITORY_URL":  # read on access, so that the environment and the working directory count
        return repository_url()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- notebooks' install cells


def set_install_url(source: str, url: str) -> str:
    """``source`` (a code cell) with the URL of every ``%pip install ... git+URL`` replaced by ``url``."""
    return INSTALL_URL.sub(lambda match: f"{match[1]}{url}", source)


def set_install_cells(notebook, url: str) -> int:
    """Point the install cell(s) of a notebook (an nbformat node) at ``url``; returns how many it rewrote."""
    changed = 0
    for cell in notebook.cells:
        if cell.cell_type == "code" and INSTALL_URL.search(cell.source):
            rewritten = set_install_url(cell.source, url)
            changed += rewritten != cell.source
            cell.source = rewritten
    return changed


def install_urls(notebook) -> list[str]:
    """The URLs the notebook's install cells install from."""
    return [m[2] for cell in notebook.cells if cell.cell_type == "code" for m in INSTALL_URL.finditer(cell.source)]


# ----------------------------------------------------------------------------- the committed result store


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "milr").expanduser() / "repository"


def git(*args: str, cwd: Path | None = None) -> None:
    environment = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # a private or missing repository fails, never prompts
    try:
        subprocess.run(
            ["git", *args], cwd=cwd, env=environment, check=True, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S
        )
    except subprocess.CalledProcessError as error:
        raise RepositoryError(f"git {' '.join(args)} failed: {(error.stderr or error.stdout).strip()}") from None
    except subprocess.TimeoutExpired:
        raise RepositoryError(f"git {' '.join(args)} took more than {FETCH_TIMEOUT_S} s") from None


def _fetch_results(url: str, ref: str | None = None) -> Path:
    """A folder holding the repository's ``results/`` at ``ref`` (default: its default branch), fetched once.

    Shallow (one commit), sparse (``results/`` and the top-level files only) and, where the server
    supports it, without the blobs outside ``results/``. The folder is
    ``<cache>/repository/<hash of url>-<ref>``; a second call reuses it without any network.
    """
    if shutil.which("git") is None:
        raise RepositoryError("git is not installed: it is needed to fetch the committed result store")
    name = hashlib.sha256(url.encode()).hexdigest()[:12] + "-" + re.sub(r"[^\w.-]", "_", ref or "default")[:40]
    target = _cache_root() / name
    if (target / ".milr-fetched").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        git("init", "-q", str(staging))
        git("remote", "add", "origin", url, cwd=staging)
        git("sparse-checkout", "set", "results", cwd=staging)
        git("fetch", "-q", "--depth", "1", "--filter=blob:none", "origin", ref or "HEAD", cwd=staging)
        git("checkout", "-q", "FETCH_HEAD", cwd=staging)
        (staging / ".milr-fetched").write_text(json.dumps({"url": url, "ref": ref}) + "\n")
        try:
            staging.rename(target)
        except OSError:  # another process fetched it first
            if not (target / ".milr-fetched").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def committed_store(profile: str) -> Path:
    """The folder of ``profile``'s result store (see the module docstring); fetches it once outside a checkout."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV]) / profile
    root = checkout_root()
    if root is not None:
        return root / "results" / profile
    local = Path.cwd() / "results" / profile
    if profile not in COMMITTED_PROFILES:
        return local
    try:
        url, ref = repository_source()
        fetched = _fetch_results(url, ref) / "results" / profile
    except RepositoryError as error:
        warnings.warn(f"the committed {profile!r} store could not be fetched ({error}); using {local}", stacklevel=2)
        return local
    if not fetched.is_dir():
        warnings.warn(f"{url} (at {ref or 'its default branch'}) holds no results/{profile}; using {local}", stacklevel=2)
        return local
    return fetched


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["url"]:
        print(repository_url())
    elif len(argv) == 2 and argv[0] == "store":
        print(committed_store(argv[1]))
    else:
        sys.exit("usage: python -m milr_core.repository {url | store PROFILE}")


if __name__ == "__main__":
    main()

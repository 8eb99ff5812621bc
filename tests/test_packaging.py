"""Packaging: what a non-editable install (Colab's `pip install git+...`) gets, the license, the extras, torch's bound.

The wheel is built from a copy of the package's files (pyproject.toml, README.md, LICENSE, milr_core/)
with ``pip wheel --no-deps --no-build-isolation`` (setuptools from the ``test`` extra), so that the test
needs no network and leaves no ``build/`` folder in the checkout. About ten seconds.
"""

import ast
import functools
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "milr_core"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
# Imports whose module name is not the distribution's (when the distribution is not installed here).
DISTRIBUTION_OF = {"yaml": "pyyaml", "PIL": "pillow", "IPython": "ipython", "sklearn": "scikit-learn"}
LOCAL_MODULES = {"milr_core", "conftest"}


def runtime_files() -> list[str]:
    """Every file of the package that is not Python source or bytecode, relative to the checkout."""
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory):
    """(the wheel, pip's verbose log) of a build from a clean copy of the package's files."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / "milr_core", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, f"pip wheel failed:\n{log[-4000:]}"
    wheels = sorted(out.glob("milr_core-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {out}, found {wheels}"
    with zipfile.ZipFile(wheels[0]) as wheel:
        yield wheel, log


def test_license_is_an_spdx_expression_with_its_file():
    assert PROJECT["license"] == "MIT", "pyproject: license must be the SPDX string 'MIT' (PEP 639), not a table"
    assert "LICENSE" in PROJECT.get("license-files", []), "pyproject: license-files must list LICENSE"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2025-2026 the milr contributors" in text
    assert not any("License ::" in c for c in PROJECT.get("classifiers", [])), "a license classifier beside an SPDX license"


def test_citation_cites_the_software_and_the_paper():
    import yaml

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software" and citation["license"] == "MIT"
    paper = citation["references"][0]
    assert paper["title"] == "Maximal Initial Learning Rates in Deep ReLU Networks"
    assert [a["family-names"] for a in paper["authors"]] == ["Iyer", "Hanin", "Rolnick"]
    assert (paper["volume"], paper["start"], paper["end"], paper["year"]) == (202, 14500, 14530, 2023)
    assert any(i["value"] == "arXiv:2212.07295" for i in paper["identifiers"])


def test_package_data_declares_the_grids_and_the_manifest():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["milr_core"]
    assert "grids/*.yaml" in patterns and "data_manifest.json" in patterns


def test_wheel_holds_every_file_the_library_reads(built_wheel):
    wheel, _ = built_wheel
    names = set(wheel.namelist())
    grids = sorted(p.name for p in (PACKAGE / "grids").glob("*.yaml"))
    assert grids, "no milr_core/grids/*.yaml in the checkout"
    missing_grids = [g for g in grids if f"milr_core/grids/{g}" not in names]
    assert not missing_grids, f"the wheel lacks grids {missing_grids}: run_experiment would say 'unknown experiment'"
    missing = [f for f in runtime_files() if f not in names]
    assert not missing, f"files of milr_core/ missing from the wheel (add them to package-data): {missing}"
    if (PACKAGE / "data_manifest.json").is_file():
        assert "milr_core/data_manifest.json" in names


def test_wheel_metadata_carries_the_license(built_wheel):
    wheel, log = built_wheel
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    text = wheel.read(meta).decode()
    assert "License-Expression: MIT" in text and "License-File: LICENSE" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel.namelist())
    assert "SetuptoolsDeprecationWarning" not in log, "the build prints a setuptools deprecation banner:\n" + "\n".join(
        line for line in log.splitlines() if "eprecat" in line
    )


def test_torch_bound_admits_the_current_release():
    (torch,) = [Requirement(r) for r in PROJECT["dependencies"] if Requirement(r).name == "torch"]
    for version in ("2.2.0", "2.13.0", "2.14.1", "2.20.0"):
        assert torch.specifier.contains(version), f"{torch} excludes torch {version}"
    try:
        installed = metadata.version("torch").split("+")[0]
    except metadata.PackageNotFoundError:
        return
    assert SpecifierSet(str(torch.specifier)).contains(installed), f"{torch} excludes the installed torch {installed}"


def imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports in a Python file (at module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - LOCAL_MODULES - {"__future__"} - {p.stem for p in path.parent.glob("*.py")}


def requirement_closure(extras: set[str]) -> set[str]:
    """Canonical names of every distribution that ``milr_core[extras]`` pulls in, recursively (as installed here)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in PROJECT["dependencies"]]
    todo += [Requirement(r) for extra in extras for r in PROJECT["optional-dependencies"][extra]]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name == canonicalize_name(PROJECT["name"]):  # a self-reference: milr_core[notebooks]
            todo += [Requirement(r) for extra in requirement.extras for r in PROJECT["optional-dependencies"][extra]]
            continue
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in requirement.extras or {""}):
                todo.append(child)
    return seen


@functools.cache
def packages_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    found = packages_distributions().get(module)
    return {canonicalize_name(d) for d in found} if found else {canonicalize_name(DISTRIBUTION_OF.get(module, module))}


# The extras a library module may need beyond the base dependencies; every other module needs only the base.
LIBRARY_EXTRAS = {"reproduce.py": {"notebooks"}, "sweep.py": {"ray"}}  # sweep: `import ray` for executor="ray" only


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_every_library_import_is_installed_with_it(path):
    extras = LIBRARY_EXTRAS.get(path.name, set())
    closure = requirement_closure(extras)
    missing = sorted(m for m in imported_modules(path) if not distributions_of(m) & closure)
    assert not missing, f"{path.name} imports {missing}, which milr_core[{','.join(sorted(extras))}] does not install"


def test_every_test_import_is_in_the_test_extra():
    """`pip install -e '.[test]'` then `pytest` collects: whatever a test module imports, the extra installs."""
    closure = requirement_closure({"test"})
    missing = sorted(
        f"{path.name}: {module}"
        for path in sorted((ROOT / "tests").glob("*.py"))
        for module in imported_modules(path)
        if not distributions_of(module) & closure
    )
    assert not missing, f"imports that milr_core[test] does not install: {missing}"
    for extra in ("notebooks",):  # test_book.py drives milr_core.reproduce
        assert extra in {e for r in PROJECT["optional-dependencies"]["test"] for e in Requirement(r).extras}


def test_readme_installs_torch_cpu_first_on_linux():
    readme = (ROOT / "README.md").read_text()
    cpu = re.search(r"pip install torch[^\n]*--index-url https://download\.pytorch\.org/whl/cpu", readme)
    assert cpu, "the README must show the CPU-only torch install for Linux"
    assert readme.index(cpu.group(0)) < readme.index("pip install -e"), "torch's CPU build must come before the package"

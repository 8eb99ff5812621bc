"""The house's shape: data flows one way through the pipeline stages, with no cycles and small files."""

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "milr_core"
# Pipeline stages, upstream first: a module may import its own stage and those above it, never one below.
STAGES = [
    {"brief", "constraints", "config", "network"},  # what is computed: settings and networks, no torch; bounded quoting
    {"model", "datafiles", "data", "runtime", "modules", "families"},  # networks as tensors, dataset files, datasets;
    # device, threads, lanes; any torch module as replicas, the model families beyond MLPs
    {"probe", "curvature", "theory"},  # training probes, curvature operators, our bounds
    {"bisection", "ksection", "search", "sharpness", "lr_finder"},  # Algorithm 1 and the k-section, searches in lanes,
    # sharpness, the LR range test
    {"late", "catapult", "predictors"},  # protocols built on both
    {"store", "store_claims", "grid", "safe_yaml", "preflight", "workers", "repository"},  # records and claims,
    # grids and their YAML, checks before compute, supervised worker processes, where the committed store is
    {"kinds"},  # what each kind of cell computes
    {"sweep"},  # cells, seed groups, executors
    {"experiments"},  # the book's grids per profile
    {"fill"},  # a profile's missing seed groups, in order, packed into lanes, computed
    {"planner"},  # how long they take on a device; the fill against the clock
    {"censored"},  # cells, censored regression, the cell-and-seed bootstrap
    {"fit"},  # power-law fits
    {"intervals"},  # intervals of statistics that are not fits
    {"tables", "predict", "resolution"},  # every tidy summary of eta*, and its resolution
    {"sharpness_tables", "predictor_tables"},  # and of the sharpness, and of the cheap predictors of eta*
    {"rules"},  # verdicts from numbers with intervals, our thresholds
    {"sharpness_claims", "extensions"},  # claims (c)-(d), (e)-(g)
    {"claims"},  # the claims table, read off the tables
    {"style", "plot", "plot_search", "plot_variants", "plot_curvature", "plot_catapult", "plot_predictors", "beyond_mlps", "landing", "findings", "book"},  # drawing, the chapters' sentences, the notebook layer
    {"colab", "reproduce", "checks", "device_session"},  # running notebooks, checking the engine, the GPU session
    {"commands"},  # what each command does
    {"cli"},  # the command line
]
ENGINE = set().union(*STAGES[:5])  # trains and measures: no pandas, no plotting


@cache
def modules() -> dict[str, set[str]]:
    """Each milr_core module and every module it imports, at any depth of its code (lazy imports count too)."""
    graph = {}
    for path in PACKAGE.glob("*.py"):
        if path.stem == "__init__":
            continue
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            imported |= {name.split(".")[1] if name.startswith("milr_core.") else name.split(".")[0] for name in names}
        graph[path.stem] = imported
    return graph


def stage_of(module: str) -> int:
    matches = [i for i, stage in enumerate(STAGES) if module in stage]
    assert matches, f"milr_core/{module}.py belongs to no pipeline stage: add it to STAGES in {__file__}"
    return matches[0]


def test_every_module_has_a_stage_and_imports_nothing_downstream():
    graph = modules()
    for module, imported in graph.items():
        for other in imported & graph.keys():
            assert stage_of(other) <= stage_of(module), f"{module} imports {other}, a later stage"


def test_no_import_cycles():
    graph = {m: imported & set(modules()) - {m} for m, imported in modules().items()}  # parsed once (cached)
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in graph[module]:
            assert state.get(other) != 1, f"import cycle: {' -> '.join(path + [module, other])}"
            if other not in state:
                visit(other, path + [module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_the_engine_imports_no_pandas_or_plotting():
    for module, imported in modules().items():
        if module in ENGINE:
            assert not imported & {"pandas", "matplotlib", "seaborn", "IPython"}, module


def test_no_file_is_long():
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 450, f"{path.name} is over 450 lines: split it by idea"

"""Every protocol setting of the companion, as frozen dataclasses: the one place a default lives.

A record in a result store is determined by its *cell*: dataset, network shape, seed and the sections
below that its kind reads (``kinds.KINDS``). The grid schema (``grid.py``) and the command-line flags
(``cli.py``) are read off these classes, so a new field appears in both by itself.

**Constraints are data** (``constraints.py``): each field declares what values it allows, ``check_fields``
applies them once in ``__post_init__``; the command line and the grid schema read the same declarations. Checks
across fields (a bracket's order) stay in code.

Every default here is **our choice**: the paper states none of them (see the book's chapters). The two
thresholds it does state, MNIST t = 0.925 and CIFAR-10 t = 0.34, are in ``THRESHOLDS``.

This module imports no torch, so ``milr --help`` starts in well under a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from milr_core.brief import brief
from milr_core.constraints import (
    FRACTION,
    STEPS,
    SEED,
    Arguments,
    Each,
    Matches,
    OneOf,
    Range,
    check_fields,
    check_seeds,
    setting,
)

DATASETS = ("mnist", "fashion_mnist", "cifar10", "gaussians")
DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "gaussians": "Gaussians"}
# Default validation-accuracy threshold t per dataset, and whose choice it is.
THRESHOLDS = {
    "mnist": (0.925, "paper"),
    "fashion_mnist": (0.80, "ours"),
    "cifar10": (0.34, "paper"),
    "gaussians": (0.80, "ours"),
}
LOSSES = ("cross_entropy", "mse")
DTYPES = ("float32", "float64", "tf32")  # tf32: float32 storage, TF32 matmuls on a GPU (an explicit option)
DEVICES = ("auto", "cpu", "cuda")  # and cuda:N
SEARCH_METHODS = ("bisection", "ksection")
EIGEN_METHODS = ("lanczos", "power")
MATRICES = ("hessian", "ggn")
# Lewkowycz et al. (2020), full-batch GD on the squared error: eta lambda_1 below 2 stable, in [2, 4) the
# catapult, 4 and above divergence expected (the upper edge exact for their infinitely wide two-layer model).
CATAPULT_WINDOW = (2.0, 4.0)
def default_threshold(dataset: str) -> float:
    """The validation-accuracy threshold t of ``dataset`` (the paper's for MNIST and CIFAR-10, ours elsewhere)."""
    return THRESHOLDS[dataset][0]


def check_threshold(threshold: float | None) -> None:
    """A validation-accuracy threshold lies strictly between 0 and 1 (None: the dataset's default)."""
    if threshold is not None and not FRACTION.holds(threshold):
        raise ValueError(f"threshold must lie in (0, 1), got {brief(threshold)}")


def _check_device(device: str) -> None:
    if device not in DEVICES and not (isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(f"unknown device {brief(device)}; known: auto, cpu, cuda, cuda:N")


# ----------------------------------------------------------------------------------------------------------
# the protocol sections (hashed into a record's cell: renaming or adding a field changes every hash)


@dataclass(frozen=True)
class TrainConfig:
    """How one probe trains: constant-LR SGD from a fresh network, checked every ``eval_every`` steps.

    The budget is ``max_steps`` SGD steps if given, else ``epochs`` passes over the training set
    (incomplete last batches are dropped so every step sees ``batch_size`` examples). ``max_loss`` is the
    divergence bound on the training-batch loss (cross-entropy at He init is a few units, so 1e3 means
    the network has blown up).
    """

    batch_size: int = setting("examples per SGD step", Range(1, 2**20, integer=True), default=128)
    epochs: float = setting("training budget in passes over the training set (unless max_steps is set)", Range(0, 10_000, low_open=True), default=2.0)
    max_steps: int | None = setting("training budget in SGD steps, instead of epochs", STEPS, default=None)
    eval_every: int = setting("SGD steps between validation-accuracy checks", STEPS, default=25)
    loss: str = setting("training loss", OneOf(LOSSES), default="cross_entropy")
    max_loss: float = setting("a training-batch loss above this counts as divergence", Range(0, 1e30, low_open=True),
                           default=1e3)  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self, "train")

    def budget_steps(self, n_train: int) -> int:
        if self.batch_size > n_train:
            raise ValueError(f"train.batch_size {self.batch_size} exceeds the {n_train} training examples")
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * (n_train // self.batch_size)))


@dataclass(frozen=True)
class SearchConfig:
    """How eta* is searched (``search.py`` states the estimand in full).

    ``bisection`` is Algorithm 1 of the paper: geometric midpoints of the bracket [lo, hi] = ``lr_bounds``,
    a success moves lo up, a failure moves hi down, until hi / lo <= 1 + rtol; eta* = lo. A bracket that
    turns out not to straddle the edge is widened by its own ratio, at most ``max_widenings`` times.
    ``ksection`` is a different estimand (ours, kept for comparison): ``lrs_per_round`` learning rates
    spread over the bracket per round, the bracket read off the whole ledger. ``probe_above`` lists
    factors f > 1: after the search, eta* x f is probed for each, to show how far above eta* a network
    still succeeds when success is not monotone in the learning rate (a diagnostic; eta* is unchanged).
    """

    method: str = setting("bisection (the paper's Algorithm 1) or ksection (ours, another estimand)",
                       OneOf(SEARCH_METHODS), default="bisection")  # fmt: skip
    lr_bounds: tuple[float, float] = setting("the initial bracket of learning rates, low and high (widened if needed)",
                                          Each(Range(1e-10, 1e6), "be two numbers in [1e-10, 1e6], low then high", 2), default=(1e-3, 10.0))  # fmt: skip
    rtol: float = setting("the search stops when high / low <= 1 + rtol", Range(1e-6, 100), default=0.05)
    max_widenings: int = setting("how often a bracket that misses the edge may be widened by its own ratio",
                              Range(0, 64, integer=True), default=6)  # fmt: skip
    lrs_per_round: int = setting("learning rates per seed and round (ksection only)", Range(2, 1024, integer=True), default=8)
    probe_above: tuple[float, ...] = setting("factors f > 1: after the search, also probe eta* x f (a diagnostic)",
                                          Each(Range(1, 1000, low_open=True), "be a list of factors in (1, 1000]", empty=True), default=())  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self, "search")
        lo, hi = self.lr_bounds
        if not lo < hi:
            raise ValueError(f"search.lr_bounds are inverted or equal: low {lo} must be below high {hi}")
        object.__setattr__(self, "lr_bounds", (float(lo), float(hi)))  # a YAML list hashes like the tuple
        object.__setattr__(self, "probe_above", tuple(float(f) for f in self.probe_above))

    def identity(self) -> dict:
        """What names the estimand in a record's hash: never how it was executed (speculation depth k)."""
        keep = [f.name for f in fields(self) if f.name != "lrs_per_round" or self.method == "ksection"]
        return {name: getattr(self, name) for name in keep}


@dataclass(frozen=True)
class SharpnessConfig:
    """How lambda_1 is measured: the top eigenvalue of the mean training loss's Hessian on a fixed subset.

    ``tol`` bounds the *true* relative residual ``||H v - lambda v|| / |lambda|`` of the returned pair; where
    float32 arithmetic cannot reach it, the solver continues in float64 (``curvature.py``). ``effective``
    also measures the top eigenvalue of P^1/2 H P^1/2, P the per-parameter learning-rate multipliers
    (the curvature the SGD update actually sees), and ``bounds`` our bounds of chapter 8 with the
    Gauss-Newton lambda_1 (cross-entropy only).
    """

    subset_size: int = setting("training examples in the loss whose curvature is measured", Range(1, 10**7, integer=True),
                            default=2048)  # fmt: skip
    subset_seed: int = setting("seed of the permutation that picks those examples", SEED, default=0)
    chunk_size: int = setting("examples per chunk of a Hessian-vector product (memory, not the result)",
                           Range(1, 10**6, integer=True), default=2048)  # fmt: skip
    method: str = setting("eigensolver: lanczos, or power iteration", OneOf(EIGEN_METHODS), default="lanczos")
    tol: float = setting("relative residual the top eigenpair must reach", Range(1e-14, 0.5), default=1e-5)
    max_iter: int | None = setting("cap on operator products per precision (default: the solver's own)",
                                 Range(1, 100_000, integer=True), default=None)  # fmt: skip
    loss: str = setting("loss whose curvature is measured", OneOf(LOSSES), default="cross_entropy")
    matrix: str = setting("hessian, or ggn (its Gauss-Newton part)", OneOf(MATRICES), default="hessian")
    effective: bool = setting("also measure lambda_1_eff, the curvature the per-layer learning rates see", default=True)
    per_layer: bool = setting("also measure each layer's diagonal block", default=False)
    bounds: bool = setting("also our bounds of chapter 8 and the Gauss-Newton lambda_1 (cross_entropy only)", default=False)

    def __post_init__(self) -> None:
        check_fields(self, "sharpness")
        if self.bounds and self.loss != "cross_entropy":
            raise ValueError("sharpness.bounds needs loss cross_entropy (our bounds are derived for it)")


@dataclass(frozen=True)
class LateConfig:
    """Our protocol for the maximum learning rate later in training (``late.py``).

    Pretrain a fresh network at ``base_fraction`` x eta* for ``pretrain_steps`` steps (theta_T), then search
    the largest LR at which theta_T trains ``late_steps`` more steps without diverging and with validation
    accuracy still >= t. ``sharpness`` also measures lambda_1 (raw and effective) at theta_T.
    """

    base_fraction: float = setting("pretraining LR as a fraction of eta*", Range(0, 1, low_open=True), default=0.5)
    pretrain_steps: int = setting("pretraining steps (theta_T)", STEPS, default=1000)
    late_steps: int = setting("steps each late probe trains from theta_T", STEPS, default=200)
    sharpness: bool = setting("also measure lambda_1 at theta_0 and theta_T", default=True)

    def __post_init__(self) -> None:
        check_fields(self, "late")


@dataclass(frozen=True)
class TrajectoryConfig:
    """Full-batch gradient descent under MSE at eta = f / lambda_1_eff(init) for each f of ``eta_lambdas``.

    The loss is recorded every step and lambda_1 every ``every`` steps, on the sharpness section's subset
    (``catapult.py``); f below 2 is the lazy regime of Lewkowycz et al. (2020), f in [2, 4) the catapult.
    """

    eta_lambdas: tuple[float, ...] = setting("factors f of eta = f / lambda_1_eff", Each(Range(0, 1000, low_open=True),
                                          "be a non-empty list of numbers in (0, 1000]"), default=(1.0, 3.0))  # fmt: skip
    steps: int = setting("gradient-descent steps per factor", Range(1, 10**7, integer=True), default=60)
    every: int = setting("steps between sharpness measurements", Range(1, 10**7, integer=True), default=5)

    def __post_init__(self) -> None:
        check_fields(self, "trajectory")
        object.__setattr__(self, "eta_lambdas", tuple(float(f) for f in self.eta_lambdas))


@dataclass(frozen=True)
class ArithmeticConfig:
    """The arithmetic a ``resolution`` cell's probes run in: the same mathematics, other rounding (chapter 1).

    eta* is the outcome of float computations near an edge where success flips, so threads (how a product's
    reduction is split), lanes (which kernel shapes run) and speculation (which probes share a batch) can move it
    where they change the bits; with the variant's dtype these are the perturbations the resolution grid measures.
    """

    threads: int = setting("torch CPU threads the probes run on", Range(1, 1024, integer=True), default=1)
    lanes: int | None = setting("fixed lanes (None: elastic)", Range(1, 256, integer=True), default=None)
    speculation: int = setting("bisection steps evaluated at once", Range(1, 6, integer=True), default=1)

    def __post_init__(self) -> None:
        check_fields(self, "arithmetic")


@dataclass(frozen=True)
class RangeTestConfig:
    """The LR range test (Smith 2017) as fastai's ``lr_find`` runs it (``lr_finder.py``). Every default is fastai's
    (start_lr 1e-7, end_lr 10, num_it 100, stop at 4x the best smoothed loss, ``AvgSmoothLoss`` beta 0.98,
    suggestions on ``losses[num_it // 10:-5]``); ours: plain SGD with the network's LR multipliers (fastai's
    default is Adam), so that the rate tested is the rate eta* measures."""

    lr_min: float = setting("the learning rate of the first step", Range(1e-12, 1e6), default=1e-7)
    lr_max: float = setting("the rate the exponential ramp reaches at step `steps`", Range(1e-12, 1e6), default=10.0)
    steps: int = setting("SGD steps of the ramp", Range(2, 10**6, integer=True), default=100)
    smoothing: float = setting("EMA weight of the past (debiased); 0: none", Range(0, 1, high_open=True), default=0.98)
    diverge_factor: float = setting("stop once the smoothed loss exceeds this x its minimum", Range(1, 1e6, low_open=True), default=4.0)
    skip_start: int = setting("recorded steps left out before suggesting", Range(0, 10**6, integer=True), default=10)
    skip_end: int = setting("recorded steps left out at the end before suggesting", Range(0, 10**6, integer=True), default=5)

    def __post_init__(self) -> None:
        check_fields(self, "range_test")
        if not self.lr_min < self.lr_max:
            raise ValueError(f"range_test.lr_min {self.lr_min} must be below range_test.lr_max {self.lr_max}")


@dataclass(frozen=True)
class PredictorConfig:
    """The critical LR along the first update and the timing behind c / lambda_1 (``predictors.py``); all ours."""

    critical_bounds: tuple[float, float] = setting("the rates the critical LR's ladder spans", Each(Range(1e-12, 1e12), "be two numbers in [1e-12, 1e12], low then high", 2), default=(1e-4, 1e4))  # fmt: skip
    critical_ladder: int = setting("rates of that ladder, both ends included", Range(2, 1024, integer=True), default=9)
    critical_rtol: float = setting("its bisection stops when high / low <= 1 + rtol", Range(1e-6, 100), default=0.05)
    hvp_timings: int = setting("Hessian-vector products timed per seed group", Range(1, 1000, integer=True), default=3)

    def __post_init__(self) -> None:
        check_fields(self, "predictors")
        if not self.critical_bounds[0] < self.critical_bounds[1]:
            raise ValueError(f"predictors.critical_bounds must be low then high, got {self.critical_bounds}")
        object.__setattr__(self, "critical_bounds", tuple(map(float, self.critical_bounds)))  # a YAML list hashes alike


@dataclass(frozen=True)
class ModelConfig:
    """The model of a ``model_eta_star`` or ``model_range_test`` cell (``families.py``, chapter 13): the grid's depths
    and widths are the family's (its docstring says what they count), ``args`` its other keyword arguments."""

    family: str = setting("cnn, transformer or mlp (families.FAMILIES), or package.module:factory",
                          Matches(r"[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?", "be a family's name or package.module:factory"),
                          default="cnn")  # fmt: skip
    args: dict = setting("the family's keyword arguments beyond depth, width, in_dim and out_dim", Arguments(),
                         default_factory=dict)  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self, "model")


SECTIONS = {
    "train": TrainConfig,
    "search": SearchConfig,
    "sharpness": SharpnessConfig,
    "late": LateConfig,
    "trajectory": TrajectoryConfig,
    "arithmetic": ArithmeticConfig,
    "range_test": RangeTestConfig,
    "predictors": PredictorConfig,
    "model": ModelConfig,
}


# ----------------------------------------------------------------------------------------------------------
# how a computation runs (never hashed, but dtype)


@dataclass(frozen=True)
class RunOptions:
    """How a command or a sweep runs, as a user gives it (``auto`` and None resolved per call): only ``dtype``
    enters a record's identity.

    ``speculation`` is k, the number of bisection steps evaluated at once (2^k - 1 learning rates per
    seed and round; the answer does not depend on it); None picks 1 on a CPU and enough to fill a GPU.
    ``lanes`` fixes how many replicas every training step runs (``runtime.py``: a replica's bits then do not
    depend on what shares its batch); None: elastic on one CPU thread, fixed elsewhere. ``threads`` pins
    torch's CPU threads per worker (None: the machine's cores / ``workers``), because two processes with
    default threads on two cores run each step 20-50x slower.
    """

    device: str = setting("auto (cuda where torch sees one, else cpu), cpu, cuda or cuda:N", default="auto")
    dtype: str = setting("float32, float64, or tf32 (float32 storage, TF32 matmuls on a GPU)", OneOf(DTYPES),
                      default="float32")  # fmt: skip
    speculation: int | None = setting("bisection steps evaluated at once, 1 to 6 (default: 1 on a CPU, more on a GPU)",
                                   Range(1, 6, integer=True), default=None)  # fmt: skip
    lanes: int | None = setting("replicas every training step runs, padded (default: elastic on one CPU thread, "
                             "fixed elsewhere)", Range(1, 256, integer=True), default=None)  # fmt: skip
    workers: int = setting("processes computing cells in parallel", Range(1, 256, integer=True), default=1)
    threads: int | None = setting("torch CPU threads per worker (default: the cores / workers)",
                               Range(1, 1024, integer=True), default=None)  # fmt: skip
    progress: bool = setting("show progress bars on stderr", default=False)

    def __post_init__(self) -> None:
        _check_device(self.device)
        check_fields(self, "run")


@dataclass(frozen=True)
class Run:
    """One protocol call, everything resolved: which network on which data, the seeds, the threshold (the
    dataset's unless given, resolved here once), and how it computes (a concrete device, k, lanes).

    ``find_eta_star``, ``find_late_max_lr``, ``catapult_window`` and ``sharpness_at_init`` take it whole;
    ``runtime.make_run`` builds one from ``RunOptions``. ``network`` is a ``NetworkSpec`` or any model the lane
    pool can train (``probe.Replicas``).
    """

    dataset: Any
    network: Any
    seeds: tuple[int, ...] = (0,)
    threshold: float | None = None
    device: str = "cpu"
    dtype: str = "float32"
    speculation: int = 1
    lanes: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        seeds = tuple(self.seeds)
        check_seeds(seeds)
        object.__setattr__(self, "seeds", seeds)
        threshold = self.dataset.default_threshold if self.threshold is None else self.threshold
        check_threshold(threshold)
        object.__setattr__(self, "threshold", float(threshold))
        _check_device(self.device)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {brief(self.dtype)}")
        if not Range(1, 6, integer=True).holds(self.speculation):
            raise ValueError(f"speculation must be an integer in [1, 6], got {brief(self.speculation)}")
        if self.lanes is not None and not Range(1, 256, integer=True).holds(self.lanes):
            raise ValueError(f"lanes must be an integer in [1, 256], got {brief(self.lanes)}")

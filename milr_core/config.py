"""Every protocol setting of the companion, as frozen dataclasses: the one place a default lives.

A record in a result store is determined by its *cell*: dataset, network shape, seed and the sections
below that its kind reads (``sweep.KINDS``). The grid schema (``grid.py``) and the command-line flags
(``cli.py``) are read off these classes, so a new field appears in both by itself; each class checks
its own values in ``__post_init__``, once, and raises ``ValueError`` naming the field and what is allowed.

Every default here is **our choice**: the paper states none of them (see the book's chapters). The two
thresholds it does state, MNIST t = 0.925 and CIFAR-10 t = 0.34, are in ``THRESHOLDS``.

This module imports no torch, so ``milr --help`` starts in well under a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

DATASETS = ("mnist", "fashion_mnist", "cifar10", "gaussians")
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
# Lewkowycz et al. (2020), full-batch GD on the squared error: eta lambda_1 below 2 stable, in [2, 4) the
# catapult, 4 and above divergence expected (the upper edge exact for their infinitely wide two-layer model).
CATAPULT_WINDOW = (2.0, 4.0)


def positive(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and math.isfinite(value)


def whole(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_threshold(threshold: float | None) -> None:
    """A validation-accuracy threshold lies strictly between 0 and 1 (None: the dataset's default)."""
    if threshold is not None and not (positive(threshold) and threshold < 1):
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")


def check_device(device: str) -> None:
    if device not in DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(f"unknown device {device!r}; known: auto, cpu, cuda, cuda:N")


def check_choice(owner: str, name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{owner}.{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How one probe trains: constant-LR SGD from a fresh network, checked every ``eval_every`` steps.

    The budget is ``max_steps`` SGD steps if given, else ``epochs`` passes over the training set
    (incomplete last batches are dropped so every step sees ``batch_size`` examples). ``max_loss`` is the
    divergence bound on the training-batch loss (cross-entropy at He init is a few units, so 1e3 means
    the network has blown up).
    """

    batch_size: int = field(default=128, metadata={"help": "examples per SGD step"})
    epochs: float = field(
        default=2.0, metadata={"help": "training budget in passes over the training set (unless max_steps is set)"}
    )
    max_steps: int | None = field(default=None, metadata={"help": "training budget in SGD steps, instead of epochs"})
    eval_every: int = field(default=25, metadata={"help": "SGD steps between validation-accuracy checks"})
    loss: str = field(default="cross_entropy", metadata={"help": "training loss"})
    max_loss: float = field(default=1e3, metadata={"help": "a training-batch loss above this counts as divergence"})

    def __post_init__(self) -> None:
        if not whole(self.batch_size, 1):
            raise ValueError(f"train.batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.max_steps is None and not positive(self.epochs):
            raise ValueError(f"train.epochs must be positive, got {self.epochs!r}")
        if self.max_steps is not None and not whole(self.max_steps, 1):
            raise ValueError(f"train.max_steps must be an integer >= 1, got {self.max_steps!r}")
        if not whole(self.eval_every, 1):
            raise ValueError(f"train.eval_every must be an integer >= 1, got {self.eval_every!r}")
        check_choice("train", "loss", self.loss, LOSSES)
        if not positive(self.max_loss):
            raise ValueError(f"train.max_loss must be positive, got {self.max_loss!r}")

    def budget_steps(self, n_train: int) -> int:
        if self.batch_size > n_train:
            raise ValueError(f"train.batch_size {self.batch_size} exceeds the {n_train} training examples")
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * (n_train // self.batch_size)))


SEARCH_METHODS = ("bisection", "ksection")


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

    method: str = field(
        default="bisection", metadata={"help": "bisection (the paper's Algorithm 1) or ksection (ours, another estimand)"}
    )
    lr_bounds: tuple[float, float] = field(
        default=(1e-3, 10.0), metadata={"help": "the initial bracket of learning rates, low and high (widened if needed)"}
    )
    rtol: float = field(default=0.05, metadata={"help": "the search stops when high / low <= 1 + rtol"})
    max_widenings: int = field(
        default=6, metadata={"help": "how often a bracket that misses the edge may be widened by its own ratio"}
    )
    lrs_per_round: int = field(default=8, metadata={"help": "learning rates per seed and round (ksection only)"})
    probe_above: tuple[float, ...] = field(
        default=(), metadata={"help": "factors f > 1: after the search, also probe eta* x f (a diagnostic)"}
    )

    def __post_init__(self) -> None:
        check_choice("search", "method", self.method, SEARCH_METHODS)
        if not isinstance(self.lr_bounds, (tuple, list)) or len(self.lr_bounds) != 2:
            raise ValueError(f"search.lr_bounds must be [low, high], got {self.lr_bounds!r}")
        lo, hi = self.lr_bounds
        if not (positive(lo) and positive(hi)):
            raise ValueError(f"search.lr_bounds must be positive and finite, got {list(self.lr_bounds)}")
        if not lo < hi:
            raise ValueError(f"search.lr_bounds are inverted or equal: low {lo} must be below high {hi}")
        object.__setattr__(self, "lr_bounds", (float(lo), float(hi)))  # a YAML list hashes like the tuple
        if not positive(self.rtol):
            raise ValueError(f"search.rtol must be positive, got {self.rtol!r}")
        if not whole(self.max_widenings, 0):
            raise ValueError(f"search.max_widenings must be an integer >= 0, got {self.max_widenings!r}")
        if not whole(self.lrs_per_round, 2):
            raise ValueError(f"search.lrs_per_round must be an integer >= 2, got {self.lrs_per_round!r}")
        if not isinstance(self.probe_above, (tuple, list)) or not all(positive(f) and f > 1 for f in self.probe_above):
            raise ValueError(f"search.probe_above must be a list of factors > 1, got {self.probe_above!r}")
        object.__setattr__(self, "probe_above", tuple(float(f) for f in self.probe_above))

    def identity(self) -> dict:
        """What names the estimand in a record's hash: never how it was executed (speculation depth k)."""
        keep = [f.name for f in fields(self) if f.name != "lrs_per_round" or self.method == "ksection"]
        return {name: getattr(self, name) for name in keep}


EIGEN_METHODS = ("lanczos", "power")
MATRICES = ("hessian", "ggn")


@dataclass(frozen=True)
class SharpnessConfig:
    """How lambda_1 is measured: the top eigenvalue of the mean training loss's Hessian on a fixed subset.

    ``tol`` bounds the *true* relative residual ``||H v - lambda v|| / |lambda|`` of the returned pair; where
    float32 arithmetic cannot reach it, the solver continues in float64 (``curvature.py``). ``effective``
    also measures the top eigenvalue of P^1/2 H P^1/2, P the per-parameter learning-rate multipliers
    (the curvature the SGD update actually sees), and ``bounds`` our bounds of chapter 8 with the
    Gauss-Newton lambda_1 (cross-entropy only).
    """

    subset_size: int = field(
        default=2048, metadata={"help": "training examples in the loss whose curvature is measured"}
    )
    subset_seed: int = field(default=0, metadata={"help": "seed of the permutation that picks those examples"})
    chunk_size: int = field(
        default=2048, metadata={"help": "examples per chunk of a Hessian-vector product (memory, not the result)"}
    )
    method: str = field(default="lanczos", metadata={"help": "eigensolver: lanczos, or power iteration"})
    tol: float = field(default=1e-5, metadata={"help": "relative residual the top eigenpair must reach"})
    max_iter: int | None = field(
        default=None, metadata={"help": "cap on operator products per precision (default: the solver's own)"}
    )
    loss: str = field(default="cross_entropy", metadata={"help": "loss whose curvature is measured"})
    matrix: str = field(default="hessian", metadata={"help": "hessian, or ggn (its Gauss-Newton part)"})
    effective: bool = field(
        default=True, metadata={"help": "also measure lambda_1_eff, the curvature the per-layer learning rates see"}
    )
    per_layer: bool = field(default=False, metadata={"help": "also measure each layer's diagonal block"})
    bounds: bool = field(
        default=False, metadata={"help": "also our bounds of chapter 8 and the Gauss-Newton lambda_1 (cross_entropy only)"}
    )

    def __post_init__(self) -> None:
        for name in ("subset_size", "chunk_size"):
            if not whole(getattr(self, name), 1):
                raise ValueError(f"sharpness.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not whole(self.subset_seed, 0):
            raise ValueError(f"sharpness.subset_seed must be an integer >= 0, got {self.subset_seed!r}")
        check_choice("sharpness", "method", self.method, EIGEN_METHODS)
        check_choice("sharpness", "loss", self.loss, LOSSES)
        check_choice("sharpness", "matrix", self.matrix, MATRICES)
        if not (positive(self.tol) and self.tol < 1):
            raise ValueError(f"sharpness.tol must lie in (0, 1), got {self.tol!r}")
        if self.max_iter is not None and not whole(self.max_iter, 1):
            raise ValueError(f"sharpness.max_iter must be an integer >= 1, got {self.max_iter!r}")
        if self.bounds and self.loss != "cross_entropy":
            raise ValueError("sharpness.bounds needs loss cross_entropy (our bounds are derived for it)")


@dataclass(frozen=True)
class LateConfig:
    """Our protocol for the maximum learning rate later in training (``late.py``).

    Pretrain a fresh network at ``base_fraction`` x eta* for ``pretrain_steps`` steps (theta_T), then search
    the largest LR at which theta_T trains ``late_steps`` more steps without diverging and with validation
    accuracy still >= t. ``sharpness`` also measures lambda_1 (raw and effective) at theta_T.
    """

    base_fraction: float = 0.5
    pretrain_steps: int = 1000
    late_steps: int = 200
    sharpness: bool = True

    def __post_init__(self) -> None:
        if not (positive(self.base_fraction) and self.base_fraction <= 1):
            raise ValueError(f"late.base_fraction must lie in (0, 1], got {self.base_fraction!r}")
        for name in ("pretrain_steps", "late_steps"):
            if not whole(getattr(self, name), 1):
                raise ValueError(f"late.{name} must be an integer >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class TrajectoryConfig:
    """Full-batch gradient descent under MSE at eta = f / lambda_1_eff(init) for each f of ``eta_lambdas``.

    The loss is recorded every step and lambda_1 every ``every`` steps, on the sharpness section's subset
    (``catapult.py``); f below 2 is the lazy regime of Lewkowycz et al. (2020), f in [2, 4) the catapult.
    """

    eta_lambdas: tuple[float, ...] = (1.0, 3.0)
    steps: int = 60
    every: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.eta_lambdas, (tuple, list)) or not self.eta_lambdas or not all(map(positive, self.eta_lambdas)):
            raise ValueError(f"trajectory.eta_lambdas must be a non-empty list of positive numbers, got {self.eta_lambdas!r}")
        object.__setattr__(self, "eta_lambdas", tuple(float(f) for f in self.eta_lambdas))
        for name in ("steps", "every"):
            if not whole(getattr(self, name), 1):
                raise ValueError(f"trajectory.{name} must be an integer >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class RunOptions:
    """How a computation runs, not what it computes: only ``dtype`` enters a record's identity.

    ``speculation`` is k, the number of bisection steps evaluated at once (2^k - 1 learning rates per
    seed and round; the answer does not depend on it); None picks 1 on a CPU and enough to fill a GPU.
    ``threads`` pins torch's CPU threads per worker (None: the machine's cores / ``workers``), because
    two processes with default threads on two cores run each step 20-50x slower.
    """

    device: str = field(
        default="auto", metadata={"help": "auto (cuda where torch sees one, else cpu), cpu, cuda or cuda:N"}
    )
    dtype: str = field(
        default="float32", metadata={"help": "float32, float64, or tf32 (float32 storage, TF32 matmuls on a GPU)"}
    )
    speculation: int | None = field(
        default=None, metadata={"help": "bisection steps evaluated at once, 1 to 6 (default: 1 on a CPU, more on a GPU)"}
    )
    workers: int = field(default=1, metadata={"help": "processes computing cells in parallel"})
    threads: int | None = field(
        default=None, metadata={"help": "torch CPU threads per worker (default: the cores / workers)"}
    )
    progress: bool = field(default=False, metadata={"help": "show progress bars on stderr"})

    def __post_init__(self) -> None:
        check_device(self.device)
        check_choice("run", "dtype", self.dtype, DTYPES)
        if self.speculation is not None and not (whole(self.speculation, 1) and self.speculation <= 6):
            raise ValueError(f"speculation must be an integer in [1, 6], got {self.speculation!r}")
        if not whole(self.workers, 1):
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")
        if self.threads is not None and not whole(self.threads, 1):
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")


SECTIONS = {
    "train": TrainConfig,
    "search": SearchConfig,
    "sharpness": SharpnessConfig,
    "late": LateConfig,
    "trajectory": TrajectoryConfig,
}

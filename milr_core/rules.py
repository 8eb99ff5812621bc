"""How a number with its 95% interval becomes a verdict, our thresholds, and how answers become the claims table's rows.

A question of the claims table (``claims.py``) is answered per *unit*: a dataset, or a dataset under one
setting (a preprocessing, a pretraining length). Each answer is a number with its 95% interval set against a
stated threshold (or band):

- **supported** when the interval lies wholly on the side the claim needs;
- **not supported** when it lies wholly on the other side;
- **undecided** when it straddles the threshold (or an edge of the band): our grids cannot tell;
- **not measured** when the store lacks the cells, or too few of them for a fit;
- **number only** for a question that reports numbers and takes no verdict.

Units whose verdicts agree share a row; a question whose units disagree has one row per verdict, naming its
units, so each unit's verdict is plain. There is no "mixed". Every threshold below is **ours** (the paper states
none) and carries its reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

SUPPORTED, NOT_SUPPORTED, UNDECIDED = "supported", "not supported", "undecided"
NOT_MEASURED, NUMBER_ONLY = "not measured", "number only"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, UNDECIDED, NOT_MEASURED, NUMBER_ONLY)

# Our thresholds, each with its reason.
MIN_CELLS = 4  # a fit's verdict needs this many cells: two more than a line has parameters
LAW_FACTOR = 1.5  # a cell is "on" a law when the law gets it within this factor: the bar (g) has set for a
# prediction that works since before issue 24, well above what the seeds (about 15%) and float rounding
# (about 15%, issue 24) move a cell's median by; "off" the law when cells miss it by more
SAME_EXPONENT = 0.2  # two exponents (in d w, in d and w, a slope in width or in lambda_1) count as equal when they
# differ by at most this: about a third of the alpha we measure (0.6-0.7), and at that edge eta* at fixed d w
# moves by at most 32^0.1 = 1.41x across our regime's range of d/w (1/512 to 1/16), inside LAW_FACTOR
CLOSE_RHO = 0.8  # "closely related": |Spearman rho| of at least this, a strong monotone relation by convention
EDGE = 2.0  # the edge of stability, eta lambda_1 = 2 (Cohen et al. 2021)
EDGE_FACTOR = 2.0  # a product eta lambda_1 is "at the edge" within this factor of EDGE, i.e. in [1, 4]
MAJORITY = 0.5  # (f): "eta* lies in the catapult window" as a rule about networks needs more than half of them


@dataclass(frozen=True)
class Estimate:
    """A number with its 95% interval, printed as ``name value [low, high]`` (``factor``: as x1.25 [x1.17, x1.38])."""

    name: str
    value: float
    low: float
    high: float
    factor: bool = False
    digits: str = ".2f"  # how each number prints

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def __str__(self) -> str:
        if not math.isfinite(self.value):
            return f"{self.name}: none"
        number = lambda v: ("x" if self.factor else "") + format(v, self.digits)  # noqa: E731
        bounds = f"[{number(self.low)}, {number(self.high)}]" if self.has_interval else "(no interval)"
        return f"{self.name} {number(self.value)} {bounds}"


@dataclass(frozen=True)
class Judgement:
    """A verdict, why in a few words, how far the interval lies from flipping it (0 when undecided), and of what."""

    verdict: str
    why: str
    margin: float
    subject: str = ""


def shown(threshold: float, factor: bool = False) -> str:
    return f"x{threshold:g}" if factor else f"{threshold:g}"


def threshold_rule(estimate: Estimate, threshold: float, supported_if: str) -> Judgement:
    """``supported_if`` "above" or "below": where the interval must lie, wholly, for the claim."""
    if not estimate.has_interval:
        return Judgement(UNDECIDED, "no interval", 0.0, estimate.name)
    where = shown(threshold, estimate.factor)
    if estimate.low > threshold:
        side, margin = "above", estimate.low - threshold
    elif estimate.high < threshold:
        side, margin = "below", threshold - estimate.high
    else:
        return Judgement(UNDECIDED, f"interval straddles {where}", 0.0, estimate.name)
    verdict = SUPPORTED if side == supported_if else NOT_SUPPORTED
    return Judgement(verdict, f"interval {side} {where}", margin, estimate.name)


def band_rule(estimate: Estimate, band: tuple[float, float], supported_if: str) -> Judgement:
    """``supported_if`` "inside" or "outside": where the interval must lie, wholly, relative to the band [lo, hi]."""
    if not estimate.has_interval:
        return Judgement(UNDECIDED, "no interval", 0.0, estimate.name)
    lo, hi = band
    where = f"+-{hi:g}" if lo == -hi else f"[{lo:g}, {hi:g}]"
    if lo <= estimate.low and estimate.high <= hi:
        side, margin = "inside", min(estimate.low - lo, hi - estimate.high)
    elif estimate.high < lo or estimate.low > hi:
        side, margin = "outside", max(lo - estimate.high, estimate.low - hi)
    else:
        return Judgement(UNDECIDED, f"interval straddles an edge of {where}", 0.0, estimate.name)
    verdict = SUPPORTED if side == supported_if else NOT_SUPPORTED
    return Judgement(verdict, f"interval {side} {where}", margin, estimate.name)


def all_of(*judgements: Judgement) -> Judgement:
    """Several conditions at once: not supported if any fails, supported if all hold, else undecided."""
    verdicts = [j.verdict for j in judgements]
    verdict = NOT_SUPPORTED if NOT_SUPPORTED in verdicts else SUPPORTED if set(verdicts) == {SUPPORTED} else UNDECIDED
    deciding = [j for j in judgements if j.verdict == verdict] or list(judgements)
    why = "; ".join(f"{j.subject}: {j.why}" if j.subject else j.why for j in deciding)
    return Judgement(verdict, why, min(j.margin for j in deciding))


@dataclass(frozen=True)
class Answer:
    """One unit's answer to one question: its verdict, the number it rests on (with interval), why, the detail."""

    unit: str
    verdict: str
    key: str
    why: str
    detail: str
    margin: float = math.inf


def answer(unit: str, judgement: Judgement, key: object, detail: str = "") -> Answer:
    return Answer(unit, judgement.verdict, str(key), judgement.why, detail or str(key), judgement.margin)


def number(unit: str, key: object, detail: str = "") -> Answer:
    """An answer that reports a number and takes no verdict."""
    return Answer(unit, NUMBER_ONLY, str(key), "", detail or str(key))


def unmeasured(unit: str, why: str) -> Answer:
    return Answer(unit, NOT_MEASURED, "", why, why)


COLUMNS = ["question", "claim", "scope", "the paper says", "our rule", "verdict", "key number", "why", "we measured",
           "chapter"]  # fmt: skip


@dataclass(frozen=True)
class Question:
    """One question a paper claim contains: in plain words, with our rule stated before any result."""

    key: str  # "a1"
    claim: str  # the claim it belongs to, "(a) eta* is a power of depth x width"
    paper: str  # the paper's words (or that it is an extension of ours)
    question: str  # plain words, for the landing page
    rule: str  # our rule, its thresholds included
    chapter: str  # the notebook that measures it

    def rows(self, answers: list[Answer]) -> list[dict]:
        """One row per verdict among the units' answers, in order: units that agree share a row, whose number is
        that of the unit nearest to flipping (a question without verdicts lists every unit's number)."""
        if not answers:
            answers = [unmeasured("", "no unit to answer it")]
        by_verdict: dict[str, list[Answer]] = {}
        for each in answers:
            by_verdict.setdefault(each.verdict, []).append(each)
        rows = []
        for verdict, agreeing in by_verdict.items():
            scope = ", ".join(a.unit for a in agreeing if a.unit)
            details = "; ".join(labelled(a, a.detail) for a in agreeing)
            if verdict == NUMBER_ONLY:
                rows.append(self.row(scope, verdict, listed(agreeing), "", details))
                continue
            nearest = min(agreeing, key=lambda a: a.margin)
            rows.append(self.row(scope, verdict, labelled(nearest), nearest.why, details))
        return rows

    def row(self, scope: str, verdict: str, key: str, why: str, measured: str) -> dict:
        return {"question": f"({self.key}) {self.question}", "claim": self.claim, "scope": scope,
                "the paper says": self.paper, "our rule": self.rule, "verdict": verdict, "key number": key,
                "why": why, "we measured": measured, "chapter": self.chapter}  # fmt: skip


def listed(answers: list[Answer]) -> str:
    """Every unit's number, the name they share said once: "α: MNIST 0.72 [0.64, 0.82]; CIFAR-10 0.58 [...]"."""
    parts = [a.key.split(" ", 1) for a in answers]
    shared = len(answers) > 1 and len({name for name, _ in parts}) == 1
    numbers = all(len(part) == 2 and re.match(r"[x+\-−]?\d", part[1]) for part in parts)
    if shared and numbers and all(a.unit for a in answers):
        return f"{parts[0][0]}: " + "; ".join(f"{a.unit} {rest}" for a, (_, rest) in zip(answers, parts))
    return "; ".join(labelled(a) for a in answers)


def labelled(answer: Answer, text: str | None = None) -> str:
    text = answer.key if text is None else text
    return f"{answer.unit}: {text}" if answer.unit and text else text or answer.unit


@dataclass(frozen=True)
class Claim:
    """One claim of the paper answered: its questions' rows (``COLUMNS``), one per question or per unit."""

    rows: list[dict]

    @property
    def verdict(self) -> str:
        """Each question's verdict, e.g. "(b1) not supported; (b2) supported (MNIST (1000 steps)), undecided (...)"."""
        by_question: dict[str, list[dict]] = {}
        for row in self.rows:
            by_question.setdefault(row["question"].split(")")[0] + ")", []).append(row)
        return "; ".join(f"{key} {rows[0]['verdict']}" if len(rows) == 1 else
                         f"{key} " + ", ".join(f"{r['verdict']} ({r['scope']})" for r in rows)
                         for key, rows in by_question.items())  # fmt: skip

    @property
    def key(self) -> str:
        return "; ".join(row["key number"] for row in self.rows if row["key number"])

    @property
    def measured(self) -> str:
        return "; ".join(row["we measured"] for row in self.rows if row["we measured"])


def answered(*questions: tuple[Question, list[Answer]]) -> Claim:
    """A claim from its questions, each with its units' answers."""
    return Claim([row for question, answers in questions for row in question.rows(answers)])


DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "fashion_mnist": "Fashion-MNIST", "gaussians": "Gaussians"}


def dataset_label(name: str) -> str:
    return DATASET_NAMES.get(name, name)


def units(frame: pd.DataFrame, suffix: str = "") -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per dataset of ``frame``, the label with ``suffix`` ("MNIST (per-feature)")."""
    return [(dataset_label(name) + suffix, rows) for name, rows in frame.groupby("dataset", sort=False)]

"""The book's landing page, made from the result store at build time: a verdict table and one summary figure.

``write_landing(profile, out_dir)`` writes two files that ``book/intro.md`` includes:

- ``verdicts.md``: one sentence on the store (profile and coverage of its grids, one line), then a
  compact MyST ``list-table`` (class ``milr-verdicts``, label ``tab-verdicts``) with one row per question
  of ``milr_core.claims.claims_table``: the question in plain words, its verdict (per dataset where they
  differ), the number it rests on with its 95% interval, why (where the interval lies against the rule's
  threshold), and a link to the chapter that measures it;
- ``summary.svg``: what the table's first row decides: eta* against depth x width per dataset (log-log,
  coloured by depth), the power law fitted over our regime's cells (filled; the cells outside it hollow)
  and the band of x1.5 around it within which rule (a1) counts a cell as on the law, from
  ``run_experiment("power_law", profile)``.

``scripts/build_book.sh`` runs ``python -m milr_core.landing --profile PROFILE --out book/_generated``
before ``jupyter-book build``. Text reaches the page in Unicode (eta* -> η*, lambda_1 -> λ₁), so that
it reads the same with or without MathJax.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd

from milr_core.rules import DATASET_NAMES, LAW_FACTOR

# Which chapter measures each claim: the claim's letter -> the notebook (docname under notebooks/).
CHAPTERS = {
    "a": "02_power_law",
    "a-i": "03_condition_width",
    "a-ii": "04_input_layer",
    "b": "06_late_lr",
    "c": "07_sharpness",
    "d": "08_theory",
    "e": "10_parameterisations",
    "f": "11_catapult",
    "g": "12_predict",
}
KEY_NUMBER = "key number"  # a dedicated column of claims_table, used when present
VERDICT_MARKS = {"supported": "✓", "not supported": "✗", "undecided": "?", "not measured": "–",
                 "number only": "#"}  # fmt: skip
KEY_NUMBER_CHARS = 60  # a key number without an interval is cut to its first clause past this length

# ASCII maths of the engine's strings -> Unicode, in order (the first ones are the most specific).
UNICODE = [
    (r"(?<![A-Za-z])lambda_T(?![A-Za-z])", "λ₁(θ_T)"),
    (r"(?<![A-Za-z])lambda_0(?![A-Za-z])", "λ₁(θ₀)"),
    (r"(?<![A-Za-z])theta_T(?![A-Za-z])", "θ_T"),
    (r"(?<![A-Za-z])theta_0(?![A-Za-z])", "θ₀"),
    (r"(?<![A-Za-z])lambda_1\(GGN\)", "λ₁(GGN)"),
    (r"(?<![A-Za-z])lambda_1", "λ₁"),
    (r"(?<![A-Za-z])eta\*", "η*"),
    (r"(?<![A-Za-z])eta(?![A-Za-z])", "η"),
    (r"(?<![A-Za-z])alpha(?![A-Za-z])", "α"),
    (r"(?<![A-Za-z])beta(?![A-Za-z])", "β"),
    (r"(?<![A-Za-z])rho(?![A-Za-z])", "ρ"),
    (r"(?<![A-Za-z])mu[pP](?![A-Za-z])", "μP"),
    (r"(?<![A-Za-z])ntk(?![A-Za-z])", "NTK"),
    (r"R\^2", "R²"),
    (r"\^β", "^β"),
    (r"\(d w\)", "(dw)"),
    (r" x ", " × "),
    (r"\bd x w\b", "d × w"),
    (r">>", "≫"),
    (r" -> ", " → "),
    (r"<=", "≤"),
    (r">=", "≥"),
    (r"\+-", "±"),
    (r"(?<![A-Za-z])x(?=\d)", "×"),  # "x0.1", "(x1.98)": a factor
    (r"(?<![\w.])-(?=\d)", "−"),  # a minus sign, not a hyphen
]
NUMBER = r"[-+−]?\d[\d.]*(?:e[-+]?\d+)?"
WITH_INTERVAL = re.compile(rf"(?:(?P<label>[\w-]+): )?(?P<lead>[^;:\[\]]*?)(?P<value>{NUMBER}) \[(?P<low>{NUMBER}), (?P<high>{NUMBER})\]")


def unicode_math(text: str) -> str:
    """The engine's ASCII maths in Unicode: "eta* x lambda_1" -> "η* × λ₁", "R^2 >= 0.9" -> "R² ≥ 0.9"."""
    for pattern, replacement in UNICODE:
        text = re.sub(pattern, replacement, text)
    return text


def _claim_letter(claim: str) -> str | None:
    """"(a-ii) the law needs ..." -> "a-ii", "(b2) Does ..." -> "b"; None without a leading "(letter)"."""
    match = re.match(r"\s*\(([a-z](?:-[iv]+)?)\d*\)", claim)
    return match.group(1) if match else None


def key_number(row: pd.Series) -> str:
    """The claim's key number: the ``key number`` column when claims_table has one, else the first number
    with its interval in "we measured" (with the dataset it belongs to), else its first clause."""
    if KEY_NUMBER in row.index and isinstance(row[KEY_NUMBER], str) and row[KEY_NUMBER].strip():
        return row[KEY_NUMBER].strip()
    measured = str(row.get("we measured", "") or "")
    for clause in measured.split("; "):
        match = WITH_INTERVAL.search(clause)
        if match:
            label = f"{DATASET_NAMES.get(match['label'], match['label'])}: " if match["label"] else ""
            return f"{label}{match['lead']}{match['value']} [{match['low']}, {match['high']}]"
    first = measured.split("; ")[0].strip()
    if len(first) > KEY_NUMBER_CHARS and ", " in first:
        first = first.split(", ")[0]
    label = re.match(r"([\w-]+): ", first)
    if label and label[1] in DATASET_NAMES:
        first = f"{DATASET_NAMES[label[1]]}: {first[label.end():]}"
    return first or "–"


def cell(text: str) -> str:
    """Text for one table cell: one line, its ASCII maths in Unicode, a literal "*" (never emphasis)."""
    return unicode_math(" ".join(str(text).split())).replace("*", "\\*")


def _chapter_link(claim: str, chapter: str | None = None) -> str:
    """A link to ``chapter`` (a notebook's docname), or to the chapter of the claim's letter (``CHAPTERS``)."""
    chapter = chapter if isinstance(chapter, str) and chapter else CHAPTERS.get(_claim_letter(claim) or "")
    if chapter is None:
        return "–"
    return f"{{doc}}`chapter {int(chapter.split('_')[0])} </notebooks/{chapter}>`"


def _verdict_cell(rows: pd.DataFrame) -> str:
    """One question's verdict: "✓ supported", or per verdict the units it holds for where they differ."""
    marked = lambda verdict: f"{VERDICT_MARKS.get(verdict, '')} {verdict}".strip()  # noqa: E731
    if len(rows) == 1:
        return marked(str(rows["verdict"].iloc[0]))
    return "; ".join(f"{marked(str(r['verdict']))}: {r['scope']}" for _, r in rows.iterrows())


def verdicts_table(claims: pd.DataFrame) -> str:
    """The compact verdict table (a MyST ``list-table``, class ``milr-verdicts``): one row per question (per claim
    for a table without questions) with its verdict, the number it rests on, why, and its chapter."""
    lines = [
        "```{list-table} What the paper claims, and what we measured",
        ":header-rows: 1",
        ":class: milr-verdicts",
        ":name: tab-verdicts",
        "",
        "* - Question",
        "  - Verdict",
        "  - Number [95% interval]",
        "  - Why",
        "  - Measured in",
    ]
    asked = "question" if "question" in claims else "claim"
    for question, rows in claims.groupby(asked, sort=False):
        first = rows.iloc[0]
        number = (first[KEY_NUMBER] if pd.notna(first[KEY_NUMBER]) and first[KEY_NUMBER] else "–") \
            if asked == "question" else key_number(first)  # fmt: skip
        lines += [
            f"* - {cell(question)}",
            f"  - {cell(_verdict_cell(rows))}",
            f"  - {cell(number)}",
            f"  - {cell(first.get('why', '') or '–')}",
            f"  - {_chapter_link(str(question), first.get('chapter'))}",
        ]
    return "\n".join(lines) + "\n```\n"


def _coverage_line(profile: str, coverage: pd.DataFrame) -> str:
    """The grids' coverage in one line: cells stored of cells planned, widths and depths present, devices and hours."""
    cells, stored = int(coverage["cells"].sum()), int(coverage["stored"].sum())
    share = f" ({stored / cells:.0%})" if cells else ""

    def values(column: str) -> list[int]:
        found = {int(v) for text in coverage[column].dropna() for v in str(text).split(",") if v.strip()}
        return sorted(found)

    widths, depths = values("widths"), values("depths")
    span = lambda xs: f"{xs[0]}–{xs[-1]}" if len(xs) > 1 else (str(xs[0]) if xs else "none")  # noqa: E731
    devices = sorted({d.strip() for text in coverage["devices"].dropna() for d in str(text).split(";") if d.strip()})
    hours = float(coverage["hours"].sum()) if "hours" in coverage else float("nan")
    where = f", computed on {', '.join(devices)}" if devices else ""
    took = f" in {hours:.1f} hours" if np.isfinite(hours) and hours > 0 else ""
    return (
        f"**Coverage** of the `{profile}` store: {stored} of {cells} grid cells{share} across "
        f"{coverage['experiment'].nunique()} experiments, widths {span(widths)}, depths {span(depths)}{where}{took}."
    )


def dataset_name(key: str) -> str:
    return DATASET_NAMES.get(key, key)


def summary_figure(frame: pd.DataFrame):
    """What question (a1) decides: η* against depth × width per dataset, with the power law fitted in our regime.

    One panel per dataset; each point is a cell's median η* over its seeds (on the log scale, as the fits
    aggregate), coloured by depth, filled in our regime (``fit.in_regime``) and hollow outside it. The dashed
    line is the law fitted over the regime's cells, drawn over their range of d w, and the shaded band is
    the law ×/÷ ``rules.LAW_FACTOR``, within which (a1) counts cells as on the law; the corner gives α and the
    cells' scatter with their 95% intervals. Searches that did not converge cannot sit on a log axis and are
    counted in the panel. Returns a Figure made without pyplot (no backend, no global state).
    """
    import matplotlib
    from matplotlib import ticker
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from milr_core.fit import fit_power_law, in_regime

    datasets = list(dict.fromkeys(frame["dataset"]))
    depths = sorted({int(d) for d in frame["depth"]})
    palette = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(depths), 2)))
    colors = {d: palette[i] for i, d in enumerate(depths)}
    fig = Figure(figsize=(7.2, 3.2), layout="constrained")
    axes = fig.subplots(1, len(datasets), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, datasets):
        rows = frame[frame["dataset"] == name]
        values = pd.to_numeric(rows["eta_star"], errors="coerce").astype(float)
        usable = np.isfinite(values) & (values > 0)
        kept = rows.loc[usable, ["depth", "width"]].assign(value=values[usable])
        cells = kept.groupby(["depth", "width"])["value"].apply(lambda v: float(np.exp(np.median(np.log(v)))))
        cells = cells.reset_index().assign(dw=lambda c: c["depth"] * c["width"])
        inside = in_regime(cells)
        for depth, color in colors.items():
            for regime, face in ((True, color), (False, "none")):
                mine = cells[(cells["depth"] == depth) & (inside == regime)]
                ax.scatter(mine["dw"], mine["value"], s=22, zorder=3, facecolors=face, edgecolors=color if not regime
                           else "black", linewidths=0.4 if regime else 1.0)  # fmt: skip
        title = dataset_name(name)
        thresholds = rows["threshold"].dropna().unique() if "threshold" in rows else []
        if len(thresholds) == 1:
            title += f" (t = {thresholds[0]:g})"
        try:
            fit = fit_power_law(rows[in_regime(rows)], "eta_star")
            xs = np.geomspace(cells.loc[inside, "dw"].min(), cells.loc[inside, "dw"].max(), 50)
            ax.plot(xs, fit.predict(xs), color="black", linestyle="--", linewidth=1.0, zorder=4)
            ax.fill_between(xs, fit.predict(xs) / LAW_FACTOR, fit.predict(xs) * LAW_FACTOR, color="0.5", alpha=0.2,
                            linewidth=0, zorder=1)  # fmt: skip
            note = f"in regime: α = {fit.alpha:.2f} [{fit.alpha_ci[0]:.2f}, {fit.alpha_ci[1]:.2f}]"
            if np.isfinite(fit.scatter_ci).all():
                low, high = np.exp(fit.scatter_ci)
                note += f"\nscatter ×{np.exp(fit.scatter):.2f} [×{low:.2f}, ×{high:.2f}]"
        except ValueError:
            note = "no fit (too few cells in the regime)"
        if (~usable).any():
            note += f"\n{int((~usable).sum())} of {len(rows)} searches not converged"
        ax.text(0.04, 0.04, note, transform=ax.transAxes, fontsize=7, linespacing=1.3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9.5)
        ax.set_xlabel("depth × width", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, numticks=6))
        ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
    axes[0].set_ylabel("η*", fontsize=10)
    axes[0].yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    handles = [Line2D([], [], marker="o", linestyle="", color=c, markeredgecolor="black", markeredgewidth=0.4,
                      label=f"{d}") for d, c in colors.items()]  # fmt: skip
    handles += [Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="0.3",
                       label="outside regime"),
                Line2D([], [], color="black", linestyle="--", linewidth=1.0, label="law fitted in regime"),
                Patch(color="0.5", alpha=0.2, label=f"×/÷{LAW_FACTOR:g}")]  # fmt: skip
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=7.5, frameon=False,
               title="depth", title_fontsize=8, columnspacing=0.8, handletextpad=0.3)  # fmt: skip
    return fig


def write_landing(profile: str, out_dir: Path) -> None:
    """Write ``verdicts.md`` and ``summary.svg`` for ``profile``'s store into ``out_dir`` (made if missing)."""
    import matplotlib

    from milr_core.claims import claims_table
    from milr_core.experiments import coverage, run_experiment

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    claims = claims_table(profile)
    text = (
        f"{_coverage_line(profile, coverage(profile))} Each verdict follows the rule stated with its claim in "
        f"{{doc}}`chapter 9 </notebooks/09_claims>`.\n\n"
        + verdicts_table(claims)
    )
    (out_dir / "verdicts.md").write_text(text, encoding="utf-8")
    with matplotlib.rc_context({"svg.hashsalt": "milr-landing", "svg.fonttype": "path"}):
        fig = summary_figure(run_experiment("power_law", profile))
        fig.savefig(out_dir / "summary.svg", format="svg", metadata={"Date": None})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m milr_core.landing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="paper", choices=["smoke", "paper"])
    parser.add_argument("--out", type=Path, default=Path("book/_generated"))
    args = parser.parse_args(argv)
    write_landing(args.profile, args.out)
    print(f"landing page: {args.out / 'verdicts.md'}, {args.out / 'summary.svg'}")


if __name__ == "__main__":
    main()

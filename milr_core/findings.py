"""What the chapters report, as plain text: the numbers of their "What we see" sections, read off the tables.

Each function takes the frames of ``tables.py`` / ``sharpness_tables.py`` (or a claim of ``claims.py``) and
returns Markdown without TeX (Unicode: η*, λ₁, d·w, ×), which a chapter displays with ``book.say``. A
number that cannot be had says why ("no fit (too few cells)"), never a blank. Every number is ours,
measured with our protocol.
"""

from __future__ import annotations

import pandas as pd

from milr_core.config import CATAPULT_WINDOW
from milr_core.fit import MAX_DEPTH_OVER_WIDTH, MIN_DEPTH
from milr_core.style import significant

NO_FIT = "no fit (too few cells)"


def regime_rule() -> str:
    """Our reading of condition (i) (``fit.py``): "depth ≥ 4 and depth / width ≤ 1/16"."""
    return f"depth ≥ {MIN_DEPTH} and depth / width ≤ 1/{round(1 / MAX_DEPTH_OVER_WIDTH)}"


def interval(row: pd.Series, value: str, low: str, high: str, digits: int = 2, signed: bool = False) -> str:
    """"0.71 [0.55, 0.86]", or "0.71 (no interval)" where the bootstrap gave none."""
    form = f"+.{digits}f" if signed else f".{digits}f"
    if pd.isna(row[low]) or pd.isna(row[high]):
        return f"{row[value]:{form}} (no interval)"
    return f"{row[value]:{form}} [{row[low]:{form}}, {row[high]:{form}}]"


def _value_range(values: pd.Series, digits: int = 2) -> str:
    """"0.31–4.2": the range of a series, or "–" when it is empty."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    return "–" if values.empty else f"{significant(values.min(), digits)}–{significant(values.max(), digits)}"


def select(table: pd.DataFrame, **columns) -> pd.DataFrame:
    """The rows of ``table`` whose columns equal the given values."""
    mask = pd.Series(True, index=table.index)
    for column, value in columns.items():
        mask &= table[column] == value
    return table[mask]


def verdict(claim) -> str:
    """A claim's answers (``claims.py``) and the key numbers they rest on, in Unicode Markdown, e.g.
    ``**(c1) supported; (c2) undecided**: MNIST: ...`` (the details are in chapter 9's table)."""
    from milr_core.landing import unicode_math

    def escaped(text: str) -> str:
        return unicode_math(text).replace("*", "\\*")

    return f"**{escaped(claim.verdict)}**: {escaped(claim.key)}" if claim.key else f"**{escaped(claim.verdict)}**"


# ----------------------------------------------------------------------------------------------------------
# chapter 1: one search


def search_text(record: pd.Series, probes: pd.DataFrame) -> str:
    """The search of chapter 1 in a paragraph: its bracket, η*, status, path and the probes above η*."""
    eta, (low, high) = record["eta_star"], record["bracket"]
    path = probes[probes["above"].isna()] if "above" in probes else probes
    above = probes[probes["above"].fillna(False).astype(bool)] if "above" in probes else probes.iloc[0:0]
    outcomes = ", ".join(f"{n} {outcome}" for outcome, n in path["outcome"].value_counts().items())
    best = record["largest_success_above"]
    if above.empty:
        after = "no probe above η* was run"
    else:
        ratios = ", ×".join(f"{lr / eta:.3g}" for lr in above["lr"])
        found = "none of them succeeded" if best is None or pd.isna(best) else f"the largest success was at ×{best / eta:.3g}"
        after = f"{len(above)} probes above η* (×{ratios}): {found}"
    bounds = record["search.lr_bounds"]
    value = significant(eta) if pd.notna(eta) else "none (the search did not converge)"
    return (f"This search starts from the bracket [{bounds[0]:g}, {bounds[1]:g}] with rtol = {record['search.rtol']:g}. "
            f"For a network of depth {record['depth']}, width {record['width']} it returns η* = {value} (status "
            f"`{record['status']}`), with the final bracket [{significant(low, 4)}, {significant(high, 4)}], after "
            f"{int(record['n_probes'])} probes on its path ({outcomes}); after it, {after}.")  # fmt: skip


def speculation_table(runs: dict) -> pd.DataFrame:
    """One row per speculation depth k of ``search_edges`` runs ({k: (searches, rounds)}) on one seed."""
    path = {k: sorted((o.lr, o.outcome) for _, o in searches[0].ledger) for k, (searches, _) in runs.items()}
    first = min(runs)
    return pd.DataFrame([
        {"k": k, "learning rates per round": 2**k - 1, "η*": searches[0].eta_star,
         "bracket": f"{searches[0].lo:.4g}, {searches[0].hi:.4g}", "rounds": rounds,
         "probes on the path": len(searches[0].ledger), "speculative probes": len(searches[0].speculative),
         f"same ledger as k = {first}": path[k] == path[first]}
        for k, (searches, rounds) in runs.items()
    ])  # fmt: skip


def speculation_text(table: pd.DataFrame) -> str:
    first, last = table.iloc[0], table.iloc[-1]
    same = "the same" if bool(last.iloc[-1]) else "**not** the same"
    return (f"With k = {last['k']} the search takes {last['rounds']} rounds instead of {first['rounds']}, and its "
            f"ledger (learning rates and outcomes) is {same} as at k = {first['k']}; both return "
            f"η* = {significant(first['η*'], 4)}.")  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# chapters 2-4: the power law, its provisos


def resolution_text(summary: pd.DataFrame | None) -> str:
    """Chapter 1: per perturbation, how many seeds kept the reference's eta* bit for bit and how far the others
    moved; then how many cells' band lies within their seed spread (``resolution.resolution_summary``)."""
    if summary is None or summary.empty:
        return "The resolution grid is not stored yet."
    rows = summary[summary["variant"] != "all"]
    items = [f"- **{r['variant']}**: the reference's η* bit for bit in {int(r['identical seeds'])} of {int(r['seeds'])} "
             f"seeds; η* moved by ×{significant(r['median factor'])} (median over cells), ×{significant(r['largest factor'])}"
             " at most" for _, r in rows.iterrows()]  # fmt: skip
    every = summary[summary["variant"] == "all"].iloc[0]
    items.append(f"- **All together**: the band of η* across these arithmetics lies within its spread over seeds in "
                 f"{int(every['band within seed spread'])} of {int(every['cells'])} cells (median band "
                 f"×{significant(every['median band'])}, median seed spread ×{significant(every['median seed spread'])}).")  # fmt: skip
    return "\n".join(items)


def fit_text(fits: pd.DataFrame, dataset: str, cells: str, variant: str | None = None) -> str:
    """"α = 0.71 [0.55, 0.86], R² = 0.93 (12 cells)" of ``tables.fits_table`` for one dataset (and variant)."""
    rows = select(fits, dataset=dataset, cells=cells, **({"variant": variant} if variant else {}))
    if rows.empty or pd.isna(rows["alpha"].iloc[0]):
        return NO_FIT
    row = rows.iloc[0]
    return f"α = {interval(row, 'alpha', 'alpha low', 'alpha high')}, R² = {row['R^2']:.2f} ({row['n cells']} cells)"


def product_text(product: pd.DataFrame, dataset: str, cells: str = "in regime") -> str:
    """Depth and width fitted apart (``tables.product_form_table``): a, b, and whether a − b holds 0."""
    rows = select(product, dataset=dataset, cells=cells)
    if rows.empty or pd.isna(rows["a - b"].iloc[0]):
        return NO_FIT
    row = rows.iloc[0]
    held = "holds 0: consistent with d·w" if row["d*w consistent"] else "excludes 0: not a law in d·w alone"
    return (f"a = {row['a (depth)']:.2f}, b = {row['b (width)']:.2f}, "
            f"a − b = {interval(row, 'a - b', 'a - b low', 'a - b high')} ({held})")  # fmt: skip


def above_text(above: pd.DataFrame, dataset: str) -> str:
    """How many cells had a success above η* (``tables.non_monotone_table``), and the largest."""
    rows = above[above["dataset"] == dataset]
    if rows.empty:
        return "no cell"
    hit = rows[rows["seeds with a success above"].fillna(0) > 0]
    return f"{len(hit)} of {len(rows)} cells, largest ×{rows['largest success above / eta*'].max():.2g}"


def cutoff_text(sweep: pd.DataFrame, dataset: str, min_depth: int, cutoff: str) -> str:
    """The fit at one minimum depth and largest d/w of ``tables.alpha_vs_cutoff``."""
    rows = sweep[(sweep["dataset"] == dataset) & (sweep["min depth"] == min_depth) & (sweep["max d/w"] == cutoff)]
    if rows.empty or pd.isna(rows["alpha"].iloc[0]):
        return "no fit"
    row = rows.iloc[0]
    return f"α = {row['alpha']:.2f}, R² = {row['R^2']:.2f} ({row['n cells']} cells)"


def regime_cutoff() -> str:
    """Our rule's largest d/w as ``alpha_vs_cutoff`` labels it: "1/16"."""
    return f"1/{round(1 / MAX_DEPTH_OVER_WIDTH)}"


def residual_text(residuals: pd.DataFrame, dataset: str) -> str:
    """How far the cells outside the regime lie from the law fitted inside (``tables.residuals_table``)."""
    rows = residuals[(residuals["dataset"] == dataset) & (residuals["censored"] == "")]
    if rows.empty:
        return "no fit in the regime"
    inside, outside = rows[rows["in_regime"]], rows[~rows["in_regime"]]
    if outside.empty:
        return "every cell is in the regime"
    return (f"the {len(outside)} cells outside lie {outside['residual'].abs().median():.2f} from it (median |ln|), "
            f"the {len(inside)} inside {inside['residual'].abs().median():.2f}")  # fmt: skip


def depth_one_text(slopes: pd.DataFrame, dataset: str) -> str:
    """The slope of ln η* on ln width at depth 1 (``tables.width_slope_by_depth``) and the η* it spans."""
    rows = slopes[(slopes["dataset"] == dataset) & (slopes["depth"] == 1)]
    if rows.empty or pd.isna(rows["width slope"].iloc[0]):
        return "no slope (too few widths)"
    row = rows.iloc[0]
    bounds = f" [{row['slope low']:+.2f}, {row['slope high']:+.2f}]" if pd.notna(row["slope low"]) else ""
    return (f"{row['width slope']:+.2f}{bounds}, η* from {row['value at narrowest']:.3g} at width "
            f"{row['narrowest']} to {row['value at widest']:.3g} at {row['widest']}")  # fmt: skip


def ratio_text(ratios: pd.DataFrame, dataset: str, variant: str) -> str:
    """η* of ``variant`` over the base variant, per network (``tables.variant_ratios``): median, and by depth."""
    rows = ratios[(ratios["dataset"] == dataset) & (ratios["variant"] == variant)].dropna(subset="ratio")
    if rows.empty:
        return "no network with both η*"
    by_depth = rows.groupby("depth")["ratio"].median()
    return (f"median ×{rows['ratio'].median():.2f} over {len(rows)} networks (×{by_depth.iloc[0]:.2f} at depth "
            f"{by_depth.index[0]}, ×{by_depth.iloc[-1]:.2f} at depth {by_depth.index[-1]})")  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# chapter 5: the protocol's choices


def range_text(summary: pd.DataFrame, dataset: str, threshold: bool) -> str:
    """The range of the median ratios over the threshold variants (named "t=...") or the budget ones."""
    rows = summary[(summary["dataset"] == dataset)]
    rows = rows[rows["variant"].astype(str).str.startswith("t=") == threshold].dropna(subset="ratio median")
    if rows.empty:
        return "no ratio yet"
    low, high = rows.loc[rows["ratio median"].idxmin()], rows.loc[rows["ratio median"].idxmax()]
    if f"{low['ratio median']:.2f}" == f"{high['ratio median']:.2f}":
        return f"×{low['ratio median']:.2f} for each of {', '.join(rows['variant'])}"
    return f"×{low['ratio median']:.2f} ({low['variant']}) to ×{high['ratio median']:.2f} ({high['variant']})"


EFFECT_NAMES = {"eta_star": "η*", "lambda_1": "raw λ₁", "lambda_1_eff": "effective λ₁"}


def effect_text(effects: pd.DataFrame, dataset: str) -> str:
    """Per-feature over global preprocessing (``tables.preprocessing_table``), per quantity, by depth."""
    rows = effects[effects["dataset"] == dataset].dropna(subset="ratio median")
    parts = []
    for quantity, name in EFFECT_NAMES.items():
        part = rows[rows["quantity"] == quantity].sort_values("depth")
        if len(part):
            by_depth = ", ".join(f"×{r:.2f}" for r in part["ratio median"])
            parts.append(f"{name} {by_depth} (depths {', '.join(str(d) for d in part['depth'])})")
    return "; ".join(parts) or "no ratio yet"


# ----------------------------------------------------------------------------------------------------------
# chapters 6-8, 11: curvature


def late_text(networks: pd.DataFrame) -> str:
    """Chapter 6's products and ratio (``sharpness_tables.late_networks``), effective λ₁ where measured."""
    field = "lambda_1_eff" if networks["late_lambda_1_eff"].notna().any() else "lambda_1"
    kind = "effective" if field == "lambda_1_eff" else "raw"
    later = networks[f"late_{field}"].dropna()
    return (f"Over the {len(networks)} networks and both pretraining lengths, the late product η_late·λ₁(θ_T) "
            f"({kind}) has median {significant(later.median(), 3)} and ranges over {_value_range(later)}, while "
            f"η*·λ₁(θ₀) ranges over {_value_range(networks[f'init_{field}'])}. The late learning rate is a median "
            f"{significant(networks['ratio'].astype(float).median(), 2)} times η*.")  # fmt: skip


def sharpness_text(joined: pd.DataFrame, relation: pd.DataFrame) -> str:
    """Chapter 7's products (``sharpness_tables.join_sharpness``) and which sharpness is closer to constant."""
    effective = relation.dropna(subset=["closest to constant"])
    effective = effective[effective["sharpness"] == "effective"]
    above = int((joined["eta_lambda_eff"] > 2).sum()) if "eta_lambda_eff" in joined else 0
    return (f"Over the {len(joined)} networks with both numbers, η*·λ₁ ranges over {_value_range(joined['eta_lambda'])} "
            f"with the raw λ₁ and over {_value_range(joined.get('eta_lambda_eff', pd.Series(dtype=float)))} with the "
            f"effective one; {above} of them start training above 2/λ₁ (effective). The effective product is the "
            f"closer to constant in {int(effective['closest to constant'].astype(bool).sum())} of {len(effective)} "
            "datasets.")  # fmt: skip


def bounds_text(check: pd.DataFrame) -> str:
    """Chapter 8's bounds (``sharpness_tables.bounds_check``): how often they hold, how loose they are."""
    return (f"Our sandwich lower ≤ λ₁(G) ≤ upper holds in {int(check['sandwich'].sum())} of {len(check)} networks, "
            f"and λ₁(H) stays below the upper bound (not proved) in {int(check['hessian_below_upper'].sum())}. The "
            f"upper bound is a median {significant(check['upper_over_ggn'].median())} times λ₁(G), which is a median "
            f"{significant(check['ggn_over_lower'].median())} times the lower bound; the measured ½ mean ‖Jᵢ‖² is a "
            f"median {significant(check['trace_over_expected'].median())} times its closed form.")  # fmt: skip


def eigen_text(lanczos: pd.DataFrame) -> str:
    """Chapter 8's convergence (``sharpness_tables.lanczos_table``): eigenvalues, unconverged, worst residual."""
    count = int(lanczos["networks"].sum())
    unconverged = int(((1 - lanczos["converged"]) * lanczos["networks"]).round().sum())
    wide = int(sum("float64" in d for d in lanczos["dtypes"]))
    return (f"Of the {count} stored eigenvalues, {unconverged} did not reach their tolerance; the largest residual "
            f"is {lanczos['residual max'].max():.1e}, and {wide} of the table's groups needed float64 for some of "
            "their eigenvalues.")  # fmt: skip


def trajectory_text(record: pd.Series) -> str:
    """Chapter 11's catapult run: the loss's peak and the sharpness's fall inside the window."""
    runs = {run["regime"]: run for run in record["runs"]}
    inside = runs.get("catapult")
    if inside is None or inside["diverged_at"] is not None:
        return "The run inside the window diverged or is missing: no catapult to describe."
    peak = max(inside["loss"])
    below = "below" if inside["lambda_1"][-1] < 2 / inside["lr"] else "not below"
    final = significant(inside["loss"][-1] / runs["stable"]["loss"][-1]) if "stable" in runs else "–"
    return (f"On depth {record['depth']}, width {record['width']}, seed {record['seed']} (λ₁ = "
            f"{significant(record['lambda_1_eff'], 3)}, effective), inside the window (η·λ₁ = 3) the loss rises to "
            f"{significant(peak / inside['loss'][0])} times its initial value by step {inside['loss'].index(peak)}, "
            f"while λ₁ falls to {significant(inside['lambda_1'][-1] / inside['lambda_1'][0])} times its initial value, "
            f"{below} 2/η; then the loss falls and ends at {final} times the loss of the run below the window.")  # fmt: skip


def window_text(window: pd.DataFrame) -> str:
    """Chapter 11's products under MSE against the catapult window (``config.CATAPULT_WINDOW``)."""
    low, high = CATAPULT_WINDOW
    product = pd.to_numeric(window["eta_lambda_eff"], errors="coerce").dropna()
    inside = int(((product >= low) & (product < high)).sum())
    return (f"Over the {len(product)} networks of the `catapult` experiment with both numbers, η*·λ₁ (effective) has "
            f"median {significant(product.median()) if len(product) else '–'} and ranges over {_value_range(product, 3)}; "
            f"{inside} of them lie in the window.")  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# chapters 10, 12: beyond the paper


def width_slopes_text(widths: pd.DataFrame) -> str:
    """Chapter 10's width slopes at fixed depth (``tables.width_exponents_table``), per parameterisation."""
    if widths["width slope"].isna().all():
        return "No width slope yet."
    medians = widths.groupby("variant")["width slope"].median()
    slopes = ", ".join(f"{f'{medians[v]:+.2f}'.replace('-', '−')} under {v}" for v in medians.index)
    flattest = widths.loc[widths["flattest"].astype(bool), "variant"].value_counts()
    measured = widths.dropna(subset=["width slope"])["variant"].nunique() > 1
    most = (f"{flattest.index[0]}, on {flattest.iloc[0]} of {widths['dataset'].nunique()} datasets" if measured and
            len(flattest) else "not yet known (fewer than two parameterisations measured)")  # fmt: skip
    return f"The width slope at fixed depth, median over datasets: {slopes}. The most often flattest is {most}."


def held_out_text(summary: pd.DataFrame, warnings: int) -> str:
    """Chapter 12's leave-one-cell-out summary (``tables.held_out_table``, "every cell" rows)."""
    every = summary[summary["predicted"] == "every cell"]
    coverage = f"{every['coverage'].median():.0%}" if every["coverage"].notna().any() else "–"
    return (f"Predicting every cell from the others, a held-out η* is typically off by a factor "
            f"{significant(every['typical factor'].median())} (median over datasets), and {coverage} of the held-out "
            f"cells lie in their 95% intervals, which reach a median factor {significant(every['interval factor'].median())} "
            f"either way. The prediction far outside the grid carries {warnings} warning{'' if warnings == 1 else 's'}.")  # fmt: skip

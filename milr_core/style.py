"""How the book looks: one figure style, tidy tables, and the data sentence of every figure's caption.

``set_style`` sets the look of every figure (``book.chapter`` calls it); ``frame_provenance`` writes a
figure's data sentence (which data, whether a lossy mirror, which profile and seeds, which cells of a
partial grid, which devices), which ``book.figure`` displays under the figure and glues into its caption;
``table`` shows a DataFrame without the index, each float column rounded to a few significant digits.
Text for prose and captions is Markdown without TeX (it would not be typeset): Unicode (η*, λ₁, d·w).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

# One colour and marker per probe outcome, the same in every figure of the book.
OUTCOME_STYLE = {
    "success": {"color": "#1b9e77", "marker": "o"},
    "diverged": {"color": "#d95f02", "marker": "X"},
    "budget": {"color": "#7570b3", "marker": "s"},
}
# How a cell without a measured eta* is drawn: a hollow triangle at its bound, pointing where eta* lies (censored);
# a cross where no learning rate reached t, at the learning rate of its best accuracy (no eta*).
CENSORED_MARKER = {"below": "v", "above": "^", "unreached": "x"}
CENSORED_LABEL = {"below": "all seeds failed: η* below", "above": "all seeds failed: η* above",
                  "unreached": "no LR reached t (× at the best accuracy's LR)"}  # fmt: skip
COLUMN_WIDTH_IN = 7.0  # the book's text column (~700 px): figures are drawn at its width, never wider


def set_style() -> None:
    """The book's look: seaborn's white grid, a colour-blind-safe palette, type readable at the column's width, SVG."""
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({
        "figure.figsize": (COLUMN_WIDTH_IN, 3.6), "savefig.bbox": "tight", "font.size": 10, "axes.titlesize": 10.5,
        "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9, "svg.fonttype": "none",
    })  # fmt: skip
    set_matplotlib_formats("svg")


def significant(value: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, no trailing noise: 0.7048 -> "0.705", whole numbers from
    10^digits up (1234.5 -> "1234", not "1.23e+03"), rounding error around zero (3.7e-15) -> "0"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if abs(value) < 1e-12:
        return "0"
    if abs(value) >= 10**digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def table(frame: pd.DataFrame, digits: int = 3):
    """The frame as the book shows it: no index, floats to ``digits`` significant digits, missing values as dashes."""
    floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    styled = frame.style.hide(axis="index").format({c: lambda v: significant(v, digits) for c in floats}, na_rep="–")
    return styled.set_table_attributes('class="dataframe"')  # the book's table CSS


# ----------------------------------------------------------------------------------------------------------
# the caption's data sentence


def _seed_list(seeds) -> str:
    return ", ".join(str(int(s)) for s in sorted(set(seeds)))


def frame_provenance(frame: pd.DataFrame) -> str:
    """The caption's data/profile/seeds sentence for a tidy sweep frame, from its own columns.

    Per dataset: its format (``data.format``), the generated task's dimension and, in bold, whether it is a
    lossy mirror (``data.lossy``); then the profile(s) and the seeds, the partial grids and the devices.
    """
    parts, seeds = [], {}
    for name, rows in frame.groupby("dataset", sort=False):
        details = [f"format `{rows['data.format'].iloc[0]}`"] if "data.format" in rows else []
        if "data.options.dim" in rows and rows["data.options.dim"].notna().any():
            details.append(f"dimension {int(rows['data.options.dim'].dropna().iloc[0])}")
        if "data.lossy" in rows and rows["data.lossy"].fillna(False).astype(bool).any():
            details.append("**a lossy JPEG mirror, not the canonical files**")
        parts.append(f"`{name}` ({', '.join(details)})" if details else f"`{name}`")
        seeds[name] = _seed_list(rows["seed"])
    profiles = ", ".join(f"`{p}`" for p in frame["profile"].unique()) if "profile" in frame else "not recorded"
    if len(set(seeds.values())) == 1:
        seed_text = next(iter(seeds.values()))
    else:
        seed_text = "; ".join(f"{s} ({name})" for name, s in seeds.items())
    return f"Data: {', '.join(parts)}. Profile: {profiles}. Seeds: {seed_text}.{_coverage_note(frame)}{_devices_note(frame)}"


def _coverage_note(frame: pd.DataFrame) -> str:
    """The sentence naming each grid whose store lacks cells, with the widths and depths it does hold."""
    if not {"grid", "grid_cells", "grid_stored"} <= set(frame.columns):
        return ""
    partial = [
        f"`{name}` {int(rows['grid_stored'].iloc[0])} of {int(rows['grid_cells'].iloc[0])} cells "
        f"(widths {span(rows['width'])}, depths {span(rows['depth'])})"
        for name, rows in frame.groupby("grid", sort=False)
        if rows["grid_stored"].iloc[0] < rows["grid_cells"].iloc[0]
    ]
    if not partial:
        return ""
    return f" **Partial grids, the missing cells not yet computed:** {'; '.join(partial)}."


def span(values: pd.Series) -> str:
    low, high = int(values.min()), int(values.max())
    return str(low) if low == high else f"{low}–{high}"


def _devices_note(frame: pd.DataFrame) -> str:
    """The sentence naming the devices and torch versions that computed the records (provenance)."""
    if not {"provenance.device", "provenance.torch"} <= set(frame.columns):
        return ""
    pairs = frame[["provenance.device", "provenance.torch"]].drop_duplicates().itertuples(index=False)
    return f" Computed on: {'; '.join(f'{device} (torch {torch})' for device, torch in pairs)}."

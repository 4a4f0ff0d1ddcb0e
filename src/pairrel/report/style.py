"""One style for every figure: paper widths, font sizes, run names, colours, log ticks.

Sizes are print sizes: a figure is saved at exactly its width (no ``bbox_inches="tight"``,
which would shrink or grow it), so a 7 pt label in the figure is 7 pt in the paper.

- ``ONE_COLUMN_IN`` (3.3 in) and ``TWO_COLUMN_IN`` (6.9 in) are the text widths of common
  two-column templates (ACL, ICLR's single column is 5.5 in: a two-column figure scaled to it
  keeps text at 7 × 5.5/6.9 ≈ 5.6 pt, so prefer ``one_column`` figures there).
- Every text is at least ``MIN_FONT_PT`` (7 pt); the base size is 8 pt.
- A run is named by ``run_name`` from its grid values and display names, the same way in every
  figure (and legend): display values joined by ", ", numbers as ``key=value``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

ONE_COLUMN_IN = 3.3
TWO_COLUMN_IN = 6.9
MIN_FONT_PT = 7.0
BASE_FONT_PT = 8.0
DPI = 300  # PNG resolution; PDFs are vector
# An annotated heatmap stays readable up to about this many rows at 7 pt (0.16 in a row);
# beyond it a figure shows a dot plot instead.
MAX_HEATMAP_ROWS = 20
MAX_DECADES_WITH_125_TICKS = 2.0  # a log axis spanning more labels powers of ten only

# Grid keys in naming order; seed and step are never part of a run's name (figures aggregate
# seeds and plot steps on an axis).
NAME_ORDER = ("model", "data", "loss", "labels")
NOT_NAMED = ("seed", "step")

# The two loss *types* the code implements (config ``losses.X.type``), as readers know them.
LOSS_TYPE_TITLES = {"softmax": "InfoNCE (softmax)", "bce": "BCE (pair relevance)"}

RC = {
    "font.size": BASE_FONT_PT,
    "axes.titlesize": BASE_FONT_PT,
    "axes.labelsize": BASE_FONT_PT,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT,
    "figure.titlesize": BASE_FONT_PT + 1,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.4,
    "axes.grid": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by publishers
    "ps.fonttype": 42,
    "figure.constrained_layout.use": True,
}

# Colour-blind safe (Okabe-Ito), then matplotlib's tab10 for more series.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
           "#000000")


@contextlib.contextmanager
def paper_style():
    """Context in which figures are built with the paper style (``RC``)."""
    with plt.rc_context(RC):
        yield


def new_figure(width: str = "two", height_in: float = 2.4, nrows: int = 1, ncols: int = 1,
               **kwargs):
    """``plt.subplots`` at a paper width (``"one"``: 3.3 in, ``"two"``: 6.9 in).

    Call inside ``paper_style()``. Returns ``(fig, axes)`` with ``axes`` a 2-D array.
    """
    widths = {"one": ONE_COLUMN_IN, "two": TWO_COLUMN_IN}
    if width not in widths:
        raise ValueError(f"width must be 'one' or 'two', not {width!r}")
    return plt.subplots(nrows, ncols, figsize=(widths[width], height_in), squeeze=False,
                        **kwargs)


def color(index: int) -> str:
    """The ``index``-th series colour (Okabe-Ito first, then tab10)."""
    if index < len(PALETTE):
        return PALETTE[index]
    return matplotlib.colormaps["tab10"](index % 10)


# ------------------------------------------------------------------- run names


DisplayNames = Mapping[str, Mapping[str, str]]  # grid key -> value -> display name


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def naming_keys(grids: Iterable[Mapping[str, object]]) -> list[str]:
    """Grid keys that tell the given runs apart, in ``NAME_ORDER`` then A-Z (seed, step never).

    When no key varies (a single run), the model alone names it.
    """
    grids = [g for g in grids if g]
    keys = {k for g in grids for k in g if k not in NOT_NAMED}
    # a key some runs lack (an ablated hyper-parameter) tells them apart too
    varying = {k for k in keys
               if len({"" if _is_missing(g.get(k)) else str(g.get(k)) for g in grids}) > 1}
    ordered = [k for k in NAME_ORDER if k in varying] + sorted(varying - set(NAME_ORDER))
    if not ordered and grids:
        ordered = [k for k in ("model",) if k in keys]
    return ordered


def format_value(key: str, value: object, display: DisplayNames | None = None) -> str:
    """One grid value as shown: its display name, or the value; numbers as ``key=value``."""
    shown = (display or {}).get(key, {}).get(str(value))
    if shown is not None:
        return shown
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{key}={value:g}"


def run_name(grid: Mapping[str, object], keys: Sequence[str],
             display: DisplayNames | None = None) -> str:
    """The name of a run in every figure: its values of ``keys`` (see ``naming_keys``).

    ``run_name({"model": "minilm", "loss": "bce", "labels": "binary@2", "seed": 42},
    ["loss", "labels"], {"loss": {"bce": "BCE"}})`` is ``"BCE, binary@2"``.
    """
    parts = [format_value(k, grid[k], display) for k in keys
             if k in grid and not _is_missing(grid[k])]
    return ", ".join(parts)


# ---------------------------------------------------------------- axes helpers


def _plain_number(value: float, _pos=None) -> str:
    """Tick label without exponents: 0.02, 5, 10, 2000 (``g`` keeps 6 significant digits)."""
    return f"{value:g}"


def readable_log_axis(ax, axis: str = "y", min_decades: float = 1.0) -> bool:
    """Log scale with plain tick labels (1, 2, 5, 10, 20 …), only where it helps.

    A log scale is set when all data are positive and span at least ``min_decades`` decades;
    otherwise the axis stays linear (a log axis over a factor of 2 only shows ``8×10⁰``-style
    minor ticks). Returns whether the axis is logarithmic.
    """
    values = []
    for line in ax.get_lines():
        data = line.get_ydata() if axis == "y" else line.get_xdata()
        values += [float(v) for v in data if not _is_missing(v)]
    if not values or min(values) <= 0 or math.log10(max(values) / min(values)) < min_decades:
        return False
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    # 1-2-5 ticks while few decades show; beyond, powers of ten only (LogLocator drops
    # sub-decade ticks when it has to skip decades)
    decades = math.log10(max(values) / min(values))
    subs = (1.0, 2.0, 5.0) if decades <= MAX_DECADES_WITH_125_TICKS else (1.0,)
    target.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    target.set_major_formatter(ticker.FuncFormatter(_plain_number))
    target.set_minor_formatter(ticker.NullFormatter())
    return True


DASHES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


def series_styles(grids: Sequence[Mapping[str, object]], keys: Sequence[str],
                  distinguish: Sequence[str] | None = None) -> list[dict]:
    """Line styles of runs, from their grid values, so a reader decodes them across figures.

    Colour follows the loss (or the first naming key when the loss does not vary), the line
    style and marker the label granularity (or the next key with at most 4 values). When that
    leaves two runs that differ in ``distinguish`` (default: ``keys``; a faceted figure passes
    the keys its panels do not separate) looking alike, every run gets its own colour instead
    (solid lines).
    Returns one ``{"color", "linestyle", "marker"}`` per grid.
    """
    keys = list(keys)
    hue = "loss" if "loss" in keys else (keys[0] if keys else None)
    rest = [k for k in keys if k != hue]
    values = {k: sorted({str(g.get(k)) for g in grids}) for k in rest}
    dash = "labels" if "labels" in rest else next(
        (k for k in rest if len(values[k]) <= len(DASHES)), None)
    if dash is not None and len(values[dash]) > len(DASHES):
        dash = None
    hues = sorted({str(g.get(hue)) for g in grids}) if hue else []
    dashes = values.get(dash, [])
    styles = [{"color": color(hues.index(str(g.get(hue))) if hue else 0),
               "linestyle": DASHES[dashes.index(str(g.get(dash)))] if dash else "-",
               "marker": MARKERS[dashes.index(str(g.get(dash)))] if dash else "o"}
              for g in grids]
    distinguish = list(keys if distinguish is None else distinguish)

    def ident(grid):
        return tuple(str(grid.get(k)) for k in distinguish)

    looks: dict[tuple, set] = {}
    for g, s in zip(grids, styles):
        looks.setdefault((s["color"], s["linestyle"]), set()).add(ident(g))
    if any(len(idents) > 1 for idents in looks.values()) or len(hues) > len(PALETTE):
        order = sorted({ident(g) for g in grids})
        for g, s in zip(grids, styles):
            s.update(color=color(order.index(ident(g))), linestyle="-", marker="o")
    return styles


def legend_columns(labels: Sequence[str], width_in: float) -> int:
    """How many legend columns fit ``width_in`` at 7 pt (about 0.055 in a character + key)."""
    if not labels:
        return 1
    longest = max(len(label) for label in labels)
    per_entry = 0.055 * longest + 0.45
    return max(1, min(len(labels), int(width_in // per_entry)))

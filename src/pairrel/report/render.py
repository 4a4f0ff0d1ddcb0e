"""Tables as text: GitHub Markdown, LaTeX (booktabs) and CSV.

A table is a DataFrame whose numeric columns hold scores (two decimals) and whose other columns
hold text written as given. Optional extras:

* ``stds``: ``{column: Series}`` of standard deviations; a cell then reads ``mean ± std``
  (a NaN std, e.g. a row with one run, prints the mean alone);
* ``signed``: columns printed with an explicit sign (differences: ``+1.20``, ``−0.35``);
* ``bold``: columns whose best (largest) value is bold, ties at two decimals all bold, never
  when the column has a single value; with ``bold_rows`` the best *within each row* instead;
* ``headers``: display text per column; a ``\\n`` stacks the header on several lines (LaTeX:
  a nested ``tabular``, which needs no package beyond booktabs).

The LaTeX needs only ``\\usepackage{booktabs}`` in a standard ``article`` (tested by compiling
with pdflatex); the few non-ASCII characters the report writes (± − Δ ≥ ≤ × · –) are mapped to
math-mode commands so no Unicode set-up is needed.
"""

from __future__ import annotations

import math

import pandas as pd

MISSING = "–"


def is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: float, signed: bool = False, decimals: int = 2) -> str:
    text = f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"
    return text.replace("-", "−") if signed else text


def format_cell(value: object, numeric: bool, std: object = None, signed: bool = False) -> str:
    """Scores with two decimals (``mean ± std`` when a std is given); text exactly as written."""
    if is_missing(value):
        return MISSING
    if numeric and isinstance(value, (float, int)) and not isinstance(value, bool):
        text = _number(float(value), signed)
        if not is_missing(std):
            text += f" ± {float(std):.2f}"
        return text
    return str(value)


def _is_numeric(table: pd.DataFrame, column: str) -> bool:
    return pd.api.types.is_numeric_dtype(table[column]) and not pd.api.types.is_bool_dtype(
        table[column])


def _best_mask(table: pd.DataFrame, bold: list[str], bold_rows: bool) -> pd.DataFrame:
    """True where a cell is the best of its column (or row), compared at two decimals."""
    columns = [c for c in bold if c in table.columns]
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    if not columns:
        return mask
    rounded = table[columns].apply(pd.to_numeric, errors="coerce").round(2)
    if bold_rows:
        if len(columns) < 2:
            return mask
        best = rounded.max(axis=1)
        mask[columns] = rounded.eq(best, axis=0) & rounded.notna()
    else:
        for column in columns:
            if rounded[column].notna().sum() < 2:
                continue  # a lone value is not "best" of anything
            mask[column] = rounded[column].eq(rounded[column].max())
    return mask


def to_markdown(table: pd.DataFrame, notes=(), *, stds: dict | None = None, signed=(),
                bold=(), bold_rows: bool = False, headers: dict | None = None) -> str:
    """A GitHub pipe table (best values in ``**bold**`` where asked), then notes as a list."""
    stds, headers = stds or {}, headers or {}
    columns = list(table.columns)
    numeric = [_is_numeric(table, c) for c in columns]
    best = _best_mask(table, list(bold), bold_rows)
    head = [str(headers.get(c, c)).replace("\n", " ") for c in columns]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for i, index in enumerate(table.index):
        cells = []
        for column, is_num in zip(columns, numeric):
            std = stds[column].iloc[i] if column in stds else None
            text = format_cell(table.at[index, column], is_num, std, column in signed)
            if best.at[index, column]:
                mean, _, rest = text.partition(" ± ")
                text = f"**{mean}**" + (f" ± {rest}" if rest else "")
            cells.append(text.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "±": r"$\pm$", "–": "--", "—": "---",
                  "−": "$-$", "Δ": r"$\Delta$", "≥": r"$\geq$", "≤": r"$\leq$",
                  "×": r"$\times$", "·": r"$\cdot$", "<": r"\textless{}", ">": r"\textgreater{}",
                  "|": r"\textbar{}"}


def latex_escape(text: object) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def _latex_header(text: str) -> str:
    lines = [latex_escape(line) for line in str(text).split("\n")]
    if len(lines) == 1:
        return lines[0]
    return r"\begin{tabular}[b]{@{}c@{}}" + r" \\ ".join(lines) + r"\end{tabular}"


def to_latex(table: pd.DataFrame, bold_columns=(), bold_rows: bool = False, notes=(),
             caption: str | None = None, *, stds: dict | None = None, signed=(),
             headers: dict | None = None, font_size: str | None = None,
             label: str | None = None, groups: list[str] | None = None,
             column_sep_pt: float | None = 4.0) -> str:
    """A booktabs ``tabular`` (inside a ``table`` float when a caption is given).

    ``font_size`` (``small``, ``footnotesize``) and ``column_sep_pt`` (``\\tabcolsep``,
    LaTeX's default is 6 pt) apply to the tabular only; ``notes`` follow it in
    ``\\footnotesize`` paragraphs. ``groups`` (one name per row) starts a titled block of rows
    whenever the name changes: an italic heading row, the rows' first cells indented.
    """
    stds, headers = stds or {}, headers or {}
    columns = list(table.columns)
    numeric = [_is_numeric(table, c) for c in columns]
    best = _best_mask(table, list(bold_columns), bold_rows)
    rows = []
    for i, index in enumerate(table.index):
        cells = []
        for column, is_num in zip(columns, numeric):
            std = stds[column].iloc[i] if column in stds else None
            text = format_cell(table.at[index, column], is_num, std, column in signed)
            mean, _, rest = text.partition(" ± ")
            cell = latex_escape(mean)
            if best.at[index, column]:
                cell = rf"\textbf{{{cell}}}"
            if rest:
                cell += r" {\scriptsize $\pm$ " + latex_escape(rest) + "}"
            cells.append(cell)
        if groups is not None:
            if i == 0 or groups[i] != groups[i - 1]:
                if i:
                    rows.append(r"\midrule")
                rows.append(rf"\multicolumn{{{len(columns)}}}{{@{{}}l}}"
                            rf"{{\textit{{{latex_escape(groups[i])}}}}} \\")
            cells[0] = r"\quad " + cells[0]
        rows.append(" & ".join(cells) + r" \\")
    spec = "".join("r" if n else "l" for n in numeric)
    out = [r"% generated by pairrel report; needs \usepackage{booktabs}"]
    if caption:
        out += [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}"]
        if label:
            out.append(rf"\label{{{label}}}")
    out.append("{" + (f"\\{font_size}" if font_size else "")
               + (rf"\setlength{{\tabcolsep}}{{{column_sep_pt:g}pt}}" if column_sep_pt else ""))
    out += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
            " & ".join(_latex_header(headers.get(c, c)) for c in columns) + r" \\", r"\midrule",
            *rows, r"\bottomrule", r"\end{tabular}", "}"]
    for note in notes:
        out.append(rf"\par\noindent{{\footnotesize {latex_escape(note)}}}")
    if caption:
        out.append(r"\end{table}")
    out.append(r"\par")  # ends the paragraph: files \input one after another stay apart
    return "\n".join(out) + "\n"


# Scores are mteb's 0-1 values times 100: 0.557233 * 100 is 55.723299999999995 in binary
# floating point. Twelve significant digits keep every digit a result file holds and drop that
# noise (a p-value of 3.2e-08 stays 3.2e-08).
CSV_FLOAT_FORMAT = "%.12g"


def to_csv(table: pd.DataFrame) -> str:
    """CSV with every meaningful digit (``CSV_FLOAT_FORMAT``; rounding to 2 decimals is for
    the human-readable formats only)."""
    return table.to_csv(index=False, float_format=CSV_FLOAT_FORMAT)

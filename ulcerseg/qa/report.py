"""QA outputs: CSV tables, Bland-Altman and scatter plots (PNG), summary.md and summary.html."""

from __future__ import annotations

import html
import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ulcerseg import __version__
from ulcerseg.rounding import round_frame
from ulcerseg.tables import atomic_open, atomic_path, write_frame_csv, write_json

if TYPE_CHECKING:
    from ulcerseg.qa.inputs import AutoResults
    from ulcerseg.qa.records import QAReport

log = logging.getLogger(__name__)


def file_slug(text: str) -> str:
    """``text`` as a file name part: runs of other than ASCII letters and digits -> "_", lower case."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "x"


def _fmt(v: object, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float | np.floating):
        if not math.isfinite(float(v)):
            return "–"
        if abs(float(v)) >= 1e9:  # fixed point would print hundreds of digits for 1e300
            return f"{float(v):.3g}"
        return f"{float(v):.{digits}f}"
    return str(v)


def _labelled_hline(ax: Any, y: float, style: str, label: str) -> None:
    """Horizontal bias / limit line with its label at the right edge (skipped when not finite)."""
    if math.isfinite(y):
        ax.axhline(y, color="C3", linestyle=style, linewidth=1)
        ax.annotate(
            label,
            (1.0, y),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="bottom",
            fontsize=8,
            color="C3",
        )


def _log_ratio_label(y: float) -> str:
    """Tick label of a log ratio ``y`` as percent; as a power of ten where the percent would
    overflow or be unreadable (an area typed as 1e300 mm²)."""
    if abs(y) < math.log(1e4):
        return f"{100 * math.expm1(y):+.0f}%"
    return f"×1e{y / math.log(10):+.0f}"


def _save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG atomically (a full disk leaves no truncated plot, and its error
    names the file)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def plot_bland_altman(frame: pd.DataFrame, title: str, path: Path) -> Path:
    """Two panels: differences in mm² vs mean, and ratio (log scale, %) vs mean."""
    from matplotlib.figure import Figure  # not pyplot: a caller's backend stays as it is
    from matplotlib.ticker import FuncFormatter

    from ulcerseg.qa.stats import bland_altman, bland_altman_ratio

    v = frame.dropna(subset=["test", "reference"])
    a, b = v["test"].to_numpy(float), v["reference"].to_numpy(float)
    test, ref = title.split(" vs ", 1) if " vs " in title else ("test", "reference")
    fig = Figure(figsize=(10, 4), dpi=110)
    axes = fig.subplots(1, 2)
    ba = bland_altman(a, b)
    mean = (a + b) / 2
    ax = axes[0]
    ax.scatter(mean, a - b, s=14, alpha=0.7)
    for y, style, label in (
        (ba.bias, "-", f"bias {_fmt(ba.bias)}"),
        (ba.loa_low, "--", f"LoA {_fmt(ba.loa_low)}"),
        (ba.loa_high, "--", f"LoA {_fmt(ba.loa_high)}"),
    ):
        _labelled_hline(ax, y, style, label)
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set_xlabel("mean of both (mm²)")
    ax.set_ylabel(f"{test} − {ref} (mm²)")
    ax.set_title(f"Bland-Altman (n={ba.n})", fontsize=10)
    ratio = bland_altman_ratio(a, b)
    pos = (a > 0) & (b > 0)
    ax = axes[1]
    if pos.any():
        # Plot log(test/reference) on a linear axis, labelled as percent: the LoA are symmetric
        # on this scale and back-transform to the asymmetric percent limits.
        ax.scatter(mean[pos], np.log(a[pos] / b[pos]), s=14, alpha=0.7)
        lines = (ratio.mean_log, ratio.mean_log - ba.k * ratio.sd_log, ratio.mean_log + ba.k * ratio.sd_log)
        pcts = (ratio.bias_pct, ratio.loa_low_pct, ratio.loa_high_pct)
        for y, pct, style in zip(lines, pcts, ("-", "--", "--"), strict=True):
            _labelled_hline(ax, y, style, f"{pct:+.1f}%")
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: _log_ratio_label(y)))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
    else:  # every pair has a zero area (a healed-only reference): no ratio, and no log axis
        ax.annotate("no pair with both areas > 0", (0.5, 0.5), xycoords="axes fraction", ha="center")
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("mean of both (mm², log scale)")
    ax.set_ylabel(f"{test}/{ref} − 1 (log scale)")
    dropped = f", {ratio.n_dropped_zero} zero areas left out" if ratio.n_dropped_zero else ""
    ax.set_title(f"Ratio, log scale (n={ratio.n}{dropped})", fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _save_figure(fig, path)
    return path


def plot_scatter(frame: pd.DataFrame, title: str, path: Path) -> Path:
    """Test vs reference areas with the identity line (log-log)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    v = frame.dropna(subset=["test", "reference"])
    a, b = v["test"].to_numpy(float), v["reference"].to_numpy(float)
    test, ref = title.split(" vs ", 1) if " vs " in title else ("test", "reference")
    fig = Figure(figsize=(4.5, 4.5), dpi=110)
    ax = fig.subplots()
    both = (a > 0) & (b > 0)
    ax.scatter(b[both], a[both], s=14, alpha=0.7)
    pos = np.r_[a[both], b[both]]
    if pos.size:
        lo, hi = pos.min() / 1.5, pos.max() * 1.5
        ax.plot([lo, hi], [lo, hi], color="0.5", linewidth=1, label="identity")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.legend(loc="upper left", fontsize=8)
    n_zero = int((~both).sum())
    if n_zero:
        ax.annotate(
            f"{n_zero} pair(s) with a zero area not shown (log axes)",
            (0.02, 0.02),
            xycoords="axes fraction",
            fontsize=7,
        )
    ax.set_xlabel(f"{ref} (mm²)")
    ax.set_ylabel(f"{test} (mm²)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)
    return path


def write_report(
    report: QAReport, frames: dict[str, pd.DataFrame], auto: AutoResults, plots: bool = True
) -> QAReport:
    """Write all tables, plots and the summary into ``report.out_dir``."""
    out = report.out_dir
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    def save(df: pd.DataFrame, name: str, index: bool = False) -> None:
        path = out / name
        write_frame_csv(path, round_frame(df), index=index, float_format="%.6g")  # mm² 0.01, % 0.1
        files.append(path)

    save(report.pairs.drop(columns="photo_key", errors="ignore"), "pairs.csv")  # file + sha name it
    save(report.agreement, "agreement.csv")
    for col, table in report.subgroups.items():
        save(table, f"agreement_by_{file_slug(col)}.csv")
    if not report.kappa.empty:
        save(report.kappa, "kappa.csv")
    for name, table in report.confusion.items():
        save(table, f"confusion_{file_slug(name)}.csv", index=True)
    save(report.unmatched, "unmatched.csv")
    issues = pd.DataFrame(
        [(i.source, i.item, i.message) for i in report.issues],
        columns=["source", "item", "message"],
    )
    save(issues, "issues.csv")
    figures: list[tuple[str, Path, Path]] = []
    for name, frame in frames.items() if plots else ():
        if frame.dropna(subset=["test", "reference"]).empty:
            continue
        slug = file_slug(name)
        ba = plot_bland_altman(frame, name, out / f"bland_altman_{slug}.png")
        sc = plot_scatter(frame, name, out / f"scatter_{slug}.png")
        files += [ba, sc]
        figures.append((name, ba, sc))
    write_json(out / "qa.json", provenance_record(report, auto))
    files.append(out / "qa.json")
    md = summary_markdown(report, auto, figures)
    for name, text in (("summary.md", md), ("summary.html", markdown_to_html(md, "ulcerseg QA summary"))):
        with atomic_open(out / name) as fh:
            fh.write(text)
    files += [out / "summary.md", out / "summary.html"]
    report.files = files
    report.summary_md = md
    return report


def provenance_record(report: QAReport, auto: AutoResults) -> dict[str, Any]:
    """``qa.json``: what the QA folder was made from and by, without a timestamp (the same
    inputs give the same file): this package's version, the automated results (source; their
    package versions, model and config SHA-256, each with its number of photos) and every
    manual source with the SHA-256 of its bytes (a folder: of its files' names and bytes)."""

    def counts(column: str) -> dict[str, int]:
        return dict(sorted(_value_counts(auto, column).items()))

    return {
        "package_version": __version__,
        "auto": {
            "source": str(auto.source),
            "n_photos": report.n_auto_photos,
            "package_version": counts("package_version"),
            "model_sha256": counts("model_sha256"),
            "config_sha256": counts("config_sha256"),
        },
        "manual": [{"source": str(p), "sha256": _content_sha256(p)} for p in report.manual_sources],
        "readers": report.readers,
        "px_per_mm": report.px_per_mm,
    }


def _content_sha256(path: Path) -> str | None:
    """SHA-256 of a file's bytes, or of a folder's files (relative name and bytes, in name
    order); None when it cannot be read."""
    import hashlib

    digest = hashlib.sha256()
    try:
        if path.is_file():
            digest.update(path.read_bytes())
            return digest.hexdigest()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
        return digest.hexdigest()
    except OSError:
        return None


def summary_markdown(report: QAReport, auto: AutoResults, plots: list[tuple[str, Path, Path]]) -> str:
    """One page: inputs, agreement table, Dice, kappa, sub-groups, unmatched and issues."""
    ag = report.agreement
    lines = [
        "# Agreement of automated and manual ulcer areas",
        "",
        # no timestamp: the same inputs give the same bytes (the file's time says when)
        f"ulcerseg {__version__}. "
        f"Automated results: `{auto.source}` ({report.n_auto_photos} photos, "
        f"{int((auto.table.get('status') == 'measured').sum())} measured{_copies_note(auto)}). "
        f"Manual readers: {', '.join(report.readers) or 'none'}.",
        "",
        f"Automated run: model SHA-256 {_distinct(auto, 'model_sha256')}; config SHA-256 "
        f"{_distinct(auto, 'config_sha256')}; ulcerseg {_distinct(auto, 'package_version')}. "
        f"Mask annotations measured on the marker plane at {report.px_per_mm:g} px/mm (--px-per-mm).",
        "",
        "Differences are *test − reference*; bias and 95% limits of agreement (LoA, bias ± "
        "1.96 SD) in mm² and, on the log scale, as percent (`exp(mean ± 1.96 SD of "
        "log(test/reference)) − 1`; zero areas left out). ICC(2,1): two-way random, absolute "
        "agreement; ICC(3,1): consistency (Shrout & Fleiss 1979), 95% CI. CCC: Lin (1989). "
        "Dice/IoU on the marker plane (automated run's rectified frame), over photos where at "
        "least one outline is non-empty.",
        "",
        *_clustering_note(auto),
        "## Agreement",
        "",
    ]
    if ag.empty:
        lines.append("No photo had both an automated and a manual area.")
    else:
        lines += [
            "| comparison | n | bias mm² (95% CI) | LoA mm² | bias % | LoA % | ICC(2,1) (95% CI) "
            "| ICC(3,1) | CCC | MAE mm² | Dice mean (n) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for _, r in ag.iterrows():
            lines.append(
                f"| {r['comparison']} | {int(r['n'])} | {_fmt(r['bias_mm2'])} "
                f"({_fmt(r['bias_ci_low_mm2'])} to {_fmt(r['bias_ci_high_mm2'])}) "
                f"| {_fmt(r['loa_low_mm2'])} to {_fmt(r['loa_high_mm2'])} "
                f"| {_fmt(r['bias_pct'], 1)} | {_fmt(r['loa_low_pct'], 1)} to "
                f"{_fmt(r['loa_high_pct'], 1)} | {_fmt(r['icc2'], 3)} ({_fmt(r['icc2_ci_low'], 3)}"
                f" to {_fmt(r['icc2_ci_high'], 3)}) | {_fmt(r['icc3'], 3)} | {_fmt(r['ccc'], 3)} "
                f"| {_fmt(r['mae'])} | {_fmt(r['dice_mean'], 3)} ({int(r['n_dice'])}) |"
            )
        lines.append("")
        notes = []
        for _, r in ag.iterrows():
            if int(r.get("n_dropped_zero", 0)):
                notes.append(
                    f"{r['comparison']}: {int(r['n_dropped_zero'])} pair(s) with a zero area "
                    "left out of the percent figures."
                )
            if int(r.get("n_test_missing", 0) or 0):
                notes.append(
                    f"{r['comparison']}: {int(r['n_test_missing'])} photo(s) with no "
                    f"{r['test']} area (not measured, or an area listed under input problems) left out."
                )
        lines += [f"- {n}" for n in notes] + ([""] if notes else [])
        lines.append(
            "Pearson/Spearman correlations, relative errors and CIs for all statistics: "
            "`agreement.csv`; per-photo values: `pairs.csv`."
        )
        lines.append("")
    if not report.kappa.empty:
        lines += [
            "## Healing status",
            "",
            "| comparison | n | observed agreement | kappa | linear weighted | quadratic weighted |",
            "|---|---|---|---|---|---|",
        ]
        for _, r in report.kappa.iterrows():
            lines.append(
                f"| {r['comparison']} | {int(r['n'])} | {_fmt(r['observed_agreement'], 3)} "
                f"| {_fmt(r['kappa'], 3)} | {_fmt(r['kappa_linear'], 3)} "
                f"| {_fmt(r['kappa_quadratic'], 3)} |"
            )
        lines += ["", "Confusion tables: `confusion_*.csv`.", ""]
    for col, table in report.subgroups.items():
        if table.empty:
            continue
        lines += [
            f"## By {col}",
            "",
            f"| comparison | {col} | n | bias mm² | LoA mm² | bias % | ICC(2,1) | Dice mean |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for _, r in table.iterrows():
            lines.append(
                f"| {r['comparison']} | {r[col]} | {int(r['n'])} | {_fmt(r['bias_mm2'])} | "
                f"{_fmt(r['loa_low_mm2'])} to {_fmt(r['loa_high_mm2'])} | "
                f"{_fmt(r['bias_pct'], 1)} | {_fmt(r['icc2'], 3)} | {_fmt(r['dice_mean'], 3)} |"
            )
        lines.append("")
    lines += ["## Photos not compared", ""]
    um = report.unmatched
    if um.empty:
        lines.append("Every automated photo had a manual measurement from every reader.")
    else:
        by_reason = um.groupby(["reader", "source"]).size()
        for (reader, source), n in by_reason.items():
            what = (
                "automated photos without a manual measurement"
                if source == "auto"
                else ("manual items matching no automated photo")
            )
            lines.append(f"- {reader}: {n} {what}")
        lines.append("")
        lines.append("Full list: `unmatched.csv`.")
    lines += ["", "## Input problems", ""]
    if not report.issues:
        lines.append("None.")
    else:
        shown = report.issues[:20]
        lines += [f"- {i.line()}" for i in shown]
        if len(report.issues) > len(shown):
            lines.append(f"- … and {len(report.issues) - len(shown)} more in `issues.csv`.")
    if plots:
        lines += ["", "## Plots", ""]
        for name, ba, sc in plots:
            lines.append(f"![Bland-Altman {name}]({ba.name}) ![scatter {name}]({sc.name})")
    lines.append("")
    return "\n".join(lines)


def _distinct(auto: AutoResults, column: str) -> str:
    """The distinct values of an automated-run provenance column, each with its number of
    photos when there are several (a run mixing models or configs must show it)."""
    counts = _value_counts(auto, column)
    if not counts:
        return "not recorded"
    if len(counts) == 1:
        return f"`{next(iter(counts))}`"
    return ", ".join(f"`{v}` ({n} photo{'s' if n != 1 else ''})" for v, n in counts.items())


def _value_counts(auto: AutoResults, column: str) -> dict[str, int]:
    """Photos per non-empty value of an automated-run column, most frequent first ({} when the
    table lacks the column)."""
    if column not in auto.table.columns:
        return {}
    values = auto.table[column].dropna().astype(str).str.strip()
    return {str(k): int(v) for k, v in values[values != ""].value_counts().items()}


def _clustering_note(auto: AutoResults) -> list[str]:
    """A caveat paragraph when the photos come from fewer subjects than photos: the statistics
    treat each photo as independent, while photos of one subject (visits, ulcers) are not, so
    the limits of agreement and confidence intervals are narrower than a repeated-measures
    analysis (Bland & Altman 2007) would give."""
    table = auto.table
    if "subject_id" not in table.columns:
        return []
    measured = table[table.get("status") == "measured"] if "status" in table.columns else table
    n_photos = len(measured)
    n_subjects = measured["subject_id"].nunique()
    if n_photos == 0 or n_subjects == n_photos:
        return []
    n_ulcers = len(measured.groupby(["subject_id", "ulcer_id"])) if "ulcer_id" in table.columns else n_photos
    return [
        f"The {n_photos} measured photos come from {n_subjects} subject(s) and {n_ulcers} ulcer(s). "
        "Every statistic here counts each photo as independent; photos of one subject are not, "
        "so the limits of agreement and confidence intervals are narrower than a repeated-"
        "measures analysis (Bland & Altman 2007) would give.",
        "",
    ]


def _copies_note(auto: AutoResults) -> str:
    """ ", N photo files hold bytes also at another file": each is a row of its own."""
    n = int(auto.table["photo_sha256"].duplicated(keep=False).sum())
    return f", {n} photo files hold bytes also at another file" if n else ""


def markdown_to_html(md: str, title: str) -> str:
    """Minimal converter for the summary's own Markdown (headings, tables, lists, images)."""
    body: list[str] = []
    in_table = in_list = False

    def inline(text: str) -> str:
        text = html.escape(text)
        text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2" width="48%">', text)
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
        return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-", ":"} for c in cells):
                continue
            if not in_table:
                body.append("<table>")
                body.append("<tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells) + "</tr>")
                in_table = True
            else:
                body.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("- "):
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{inline(line[2:])}</li>")
            continue
        if in_list:
            body.append("</ul>")
            in_list = False
        if line.startswith("## "):
            body.append(f"<h2>{inline(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{inline(line[2:])}</h1>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    if in_table:
        body.append("</table>")
    if in_list:
        body.append("</ul>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:1em auto;font-size:13px}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;"
        "padding:2px 6px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )

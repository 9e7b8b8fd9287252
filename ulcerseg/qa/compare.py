"""Manual vs automated comparison: pair tables, agreement tables, and :func:`run_qa`."""

from __future__ import annotations

import itertools
import logging
import math
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ulcerseg.errors import ConfigError, InputError
from ulcerseg.metrics import dice_iou
from ulcerseg.qa.inputs import (
    AutoResults,
    Issue,
    ManualReader,
    Progress,
    read_auto,
    read_manual,
)
from ulcerseg.qa.records import QAReport
from ulcerseg.qa.report import file_slug, write_report
from ulcerseg.qa.stats import agreement_row, area_range_labels, kappa_row

log = logging.getLogger(__name__)

AUTO = "auto"
READER_MEAN = "readers_mean"
AREA_RANGE = "area_range"
# Columns of the automated table copied into pairs.csv (and usable with --by).
CONTEXT_COLUMNS = ("file", "subject_id", "ulcer_id", "visit", "study_day", "needs_review", "flags")
AUTO_STATUS_COLUMNS = ("healing_status", "status_proposed")
# One automated row (photo file) in pairs: the sha256 alone is not one, since the same bytes
# at two files (two visits) are two rows. Internal: pairs.csv names the photo by sha and file.
KEY = "photo_key"


def _unique_names(readers: list[ManualReader]) -> None:
    seen: dict[str, int] = {}
    for r in readers:
        base = r.name if r.name not in (AUTO, READER_MEAN) else f"{r.name}_manual"
        count = seen.get(base, 0)
        seen[base] = count + 1
        r.name = base if count == 0 else f"{base}_{count + 1}"


def _check_slugs(names: list[str]) -> None:
    """InputError when two reader names (or one and auto / readers_mean) give the same file
    name part (``r-1`` and ``r_1`` -> ``r_1``): one's plots and tables would overwrite the
    other's."""
    seen: dict[str, str] = {file_slug(AUTO): AUTO, file_slug(READER_MEAN): READER_MEAN}
    for name in names:
        other = seen.setdefault(file_slug(name), name)
        if other != name:
            raise InputError(
                f"reader names {other!r} and {name!r} give the same output file names "
                f"(*_{file_slug(name)}.png); rename one (--manual NAME=PATH, or its reader column)"
            )


def build_pairs(auto: AutoResults, readers: list[ManualReader]) -> pd.DataFrame:
    """Long table: one row per (photo file, reader) with both areas, statuses and Dice/IoU."""
    rows = []
    table = auto.table
    auto_status_col = next((c for c in AUTO_STATUS_COLUMNS if c in table.columns), None)
    for reader in readers:
        for key, entry in reader.entries.items():
            arow = table.loc[key]
            measured = str(arow.get("status", "")) == "measured"
            auto_area = float(arow.get("area_mm2", np.nan)) if measured else np.nan
            dice = iou = np.nan
            manual_mask = entry.rect_mask if measured else None
            if manual_mask is not None:
                auto_mask = auto.auto_mask(key)
                # Both empty (healed, nothing found): agreement, but no overlap to score;
                # left out of Dice/IoU so the mean describes outlines (the areas count it).
                if (
                    auto_mask is not None
                    and auto_mask.shape == manual_mask.shape
                    and (auto_mask.any() or manual_mask.any())
                ):
                    dice, iou = dice_iou(auto_mask, manual_mask)
            row = {
                KEY: key,
                "photo_sha256": entry.photo_sha256,
                "reader": reader.name,
                "manual_area_mm2": entry.area_mm2,
                "manual_status": entry.status,
                "manual_kind": entry.kind,
                "manual_source": entry.source,
                "auto_status": arow.get("status"),
                "auto_area_mm2": auto_area,
                "diff_mm2": auto_area - entry.area_mm2,
                "ratio": auto_area / entry.area_mm2 if entry.area_mm2 > 0 else np.nan,
                "dice": dice,
                "iou": iou,
            }
            if auto_status_col:
                row["auto_healing_status"] = arow.get(auto_status_col)
            for col in CONTEXT_COLUMNS:
                if col in table.columns:
                    row[col] = arow.get(col)
            rows.append(row)
    pairs = pd.DataFrame(rows)
    if pairs.empty:
        return pd.DataFrame(columns=[KEY, "photo_sha256", "reader", "manual_area_mm2", "auto_area_mm2"])
    return pairs.sort_values(["reader", "file" if "file" in pairs else "photo_sha256"])


def _reader_pair_dice(readers: list[ManualReader], a: str, b: str) -> dict[str, tuple[float, float]]:
    ra = next(r for r in readers if r.name == a)
    rb = next(r for r in readers if r.name == b)
    out = {}
    for key in ra.entries.keys() & rb.entries.keys():
        ma, mb = ra.entries[key].rect_mask, rb.entries[key].rect_mask
        if ma is not None and mb is not None and ma.shape == mb.shape and (ma.any() or mb.any()):
            out[key] = dice_iou(ma, mb)
    return out


def comparison_frames(pairs: pd.DataFrame, readers: list[ManualReader]) -> dict[str, pd.DataFrame]:
    """Per comparison ``"<test> vs <reference>"``: photo-level test/reference/dice/iou columns.

    Comparisons: auto vs each reader; auto vs the mean of readers (photos every reader
    measured); each pair of readers (inter-reader agreement).
    """
    names = [r.name for r in readers]
    out: dict[str, pd.DataFrame] = {}
    if pairs.empty:
        return out
    wide_area = pairs.pivot_table(index=KEY, columns="reader", values="manual_area_mm2", dropna=False)
    context = pairs.drop_duplicates(KEY).set_index(KEY)
    for name in names:
        p = pairs[pairs["reader"] == name].set_index(KEY)
        out[f"{AUTO} vs {name}"] = pd.DataFrame(
            {
                "test": p["auto_area_mm2"],
                "reference": p["manual_area_mm2"],
                "dice": p["dice"],
                "iou": p["iou"],
            }
        ).join(context[[c for c in CONTEXT_COLUMNS if c in context]])
    if len(names) >= 2:
        cols = [n for n in names if n in wide_area.columns]
        complete = wide_area[cols].dropna()
        auto_area = context["auto_area_mm2"].reindex(complete.index)
        out[f"{AUTO} vs {READER_MEAN}"] = pd.DataFrame(
            {"test": auto_area, "reference": complete.mean(axis=1)}
        ).join(context[[c for c in CONTEXT_COLUMNS if c in context]])
        for a, b in itertools.combinations(names, 2):
            if a not in wide_area or b not in wide_area:
                continue
            both = wide_area[[a, b]].dropna()
            di = _reader_pair_dice(readers, a, b)
            frame = pd.DataFrame({"test": both[a], "reference": both[b]})
            frame["dice"] = [di.get(s, (np.nan, np.nan))[0] for s in frame.index]
            frame["iou"] = [di.get(s, (np.nan, np.nan))[1] for s in frame.index]
            out[f"{a} vs {b}"] = frame.join(context[[c for c in CONTEXT_COLUMNS if c in context]])
    return out


def agreement_table(frames: dict[str, pd.DataFrame], group: str | None = None) -> pd.DataFrame:
    """One row of :func:`agreement_row` statistics per comparison (and per group if given)."""
    rows = []
    for name, frame in frames.items():
        test, ref = name.split(" vs ", 1)
        valid = frame.dropna(subset=["test", "reference"])
        groups: list[tuple[object, pd.DataFrame]]
        if group is None:
            groups = [(None, valid)]
        elif group == AREA_RANGE:
            labels = area_range_labels(valid["test"], valid["reference"])
            groups = list(valid.groupby(pd.Series(labels, index=valid.index), sort=False))
            groups.sort(key=lambda g: _range_key(str(g[0])))
        elif group in valid.columns:
            groups = list(valid.groupby(valid[group].astype(str), sort=True))
        else:
            continue
        for key, sub in groups:
            row: dict[str, object] = {"comparison": name, "test": test, "reference": ref}
            if group is not None:
                row[group] = key
            if group is None:
                row["n_photos"] = len(frame)
                row["n_test_missing"] = int(frame["test"].isna().sum())
                row["n_reference_missing"] = int(frame["reference"].isna().sum())
            else:
                row["n_photos"] = len(sub)
            row.update(
                agreement_row(
                    sub["test"],
                    sub["reference"],
                    sub.get("dice"),
                    sub.get("iou"),
                )
            )
            rows.append(row)
    return pd.DataFrame(rows)


def _range_key(label: str) -> float:
    try:
        return float(label.lstrip(">=<").split("-")[0])
    except ValueError:
        return float("inf")


def status_tables(
    pairs: pd.DataFrame,
    readers: list[str],
    order: Sequence[str] | None = None,
    issues: list[Issue] | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Cohen's kappa rows and confusion tables for statuses (readers pairwise, auto if known).

    ``order`` ranks the categories (enables weighted kappa); numeric statuses are ranked by
    value. A comparison with statuses outside ``order`` is skipped with an issue, and so is,
    without ``order``, one of two vocabularies (see :func:`_vocabulary_mismatch`).
    """
    from ulcerseg.qa.stats import confusion_table

    if order and (len(set(order)) != len(order) or "" in order):  # kappa would count photos twice
        raise ConfigError(f"status order {list(order)} repeats a status or has an empty one")
    if pairs.empty or "manual_status" not in pairs or pairs["manual_status"].isna().all():
        return pd.DataFrame(), {}
    wide = pairs.pivot_table(index=KEY, columns="reader", values="manual_status", aggfunc="first")
    series: dict[str, pd.Series] = {r: wide[r] for r in readers if r in wide}
    if "auto_healing_status" in pairs:
        series[AUTO] = pairs.drop_duplicates(KEY).set_index(KEY)["auto_healing_status"]
    names = list(series)
    if AUTO in names:
        names = [AUTO] + [n for n in names if n != AUTO]
    all_values = sorted({str(v) for s in series.values() for v in s.dropna()}, key=str)
    categories: list[str] | None = list(order) if order else None
    if categories is None and all_values and all(_is_number(v) for v in all_values):
        categories = sorted(all_values, key=float)  # numeric scores are ordered
    rows, confusion = [], {}
    for a, b in itertools.combinations(names, 2):
        joined = pd.concat([series[a], series[b]], axis=1, join="inner").dropna()
        if joined.empty:
            continue
        va, vb = joined.iloc[:, 0].astype(str), joined.iloc[:, 1].astype(str)
        cats = categories or sorted(set(va) | set(vb))
        unknown = (set(va) | set(vb)) - set(cats)
        name = f"{a} vs {b}"
        why = None
        if unknown:
            why = f"statuses {sorted(unknown)} not in the status order {cats}; no kappa"
        elif categories is None:  # labels with no order given: are they one set of statuses?
            why = _vocabulary_mismatch({a: set(va), b: set(vb)})
        if why:
            if issues is not None:
                issues.append(Issue("--status-order", name, why))
            continue
        row = {"comparison": name}
        row.update(kappa_row(list(va), list(vb), cats if categories else None))
        rows.append(row)
        confusion[name] = confusion_table(list(va), list(vb), cats)
    return pd.DataFrame(rows), confusion


def _vocabulary_mismatch(used: dict[str, set[str]]) -> str | None:
    """Why two raters' status labels (each one's categories on the photos both rated) are not
    one set of statuses, or None.

    Rule: they are two vocabularies when neither one's categories include the other's and
    fewer than half of all the categories are used by both; so two raters sharing at most one
    category, each with one of its own (healed/open vs the automated baseline, improving,
    stable, healed...): kappa counts each label of one's own as a disagreement, and its 0.000
    reads as a measured agreement. A rater who used fewer of the same statuses (only ``open``)
    is compared. Only for labels with no order: ``--status-order`` (or numeric statuses)
    declares one scale.
    """
    (a, sa), (b, sb) = used.items()
    shared = sa & sb
    if sa <= sb or sb <= sa or 2 * len(shared) >= len(sa | sb):
        return None
    common = f"only {sorted(shared)}" if shared else "no status"
    return (
        f"{a} statuses {sorted(sa)} and {b} statuses {sorted(sb)} share {common}: not one set of "
        "statuses; no kappa (if they are one scale, give it with --status-order)"
    )


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _refuse_repeated_manuals(manuals: Sequence[str | Path]) -> None:
    """InputError when two manual references are one file or folder (the same resolved path,
    or a hard link): its reader compared with itself agrees perfectly, a fake inter-reader ICC
    of 1.000."""
    seen: dict[object, str | Path] = {}
    for manual in manuals:
        path = Path(manual)
        try:
            st = path.stat()
            key: object = (st.st_dev, st.st_ino)
        except OSError:  # read_manual says what is wrong with it
            key = path.resolve()
        if key in seen:
            first = seen[key]
            what = "given twice" if str(first) == str(manual) else f"the same file as {first}"
            raise InputError(f"{manual}: {what} (--manual); a reader compared with itself agrees perfectly")
        seen[key] = manual


def _check_px_per_mm(px_per_mm: object) -> None:
    """ConfigError unless ``px_per_mm`` is a finite number 1-1000 (``qa --px-per-mm``'s range):
    a negative one measured every mask annotation at a wrong area, 0 divided by zero."""
    if not (
        isinstance(px_per_mm, numbers.Real)
        and not isinstance(px_per_mm, bool)
        and math.isfinite(float(px_per_mm))
        and 1 <= float(px_per_mm) <= 1000
    ):
        raise ConfigError(f"px_per_mm must be a finite number 1-1000 (px per mm), got {px_per_mm!r}")


def run_qa(
    auto: str | Path,
    manuals: Sequence[str | Path] | str | Path,
    out_dir: str | Path,
    by: Sequence[str] | str | None = None,
    names: Sequence[str | None] | None = None,
    status_order: Sequence[str] | None = None,
    px_per_mm: float = 20.0,
    progress: Progress | None = None,
    plots: bool = True,
) -> QAReport:
    """Compare automated areas with one or more manual references and write the QA folder.

    ``auto``: a measure output folder or measurements CSV. ``manuals``: CSVs of areas or
    folders of annotations (one reader each, or one per ``reader`` value in a CSV).
    ``by``: column(s) for sub-group tables (e.g. ``subject_id``, a site column in the
    automated CSV, ``needs_review``) or ``"area_range"``. ``px_per_mm``: marker-plane
    resolution used to measure mask annotations (mm²). ``progress(items, total)`` may wrap
    the per-annotation loop (e.g. a tqdm bar). ``plots=False`` skips the PNG figures.
    """
    if isinstance(manuals, str | Path):
        manuals = [manuals]
    if not manuals:
        raise InputError("qa: no manual reference given (a CSV of areas or a folder of annotations)")
    if isinstance(names, str):  # one reader's name, not one name per character
        names = [names]
    if isinstance(status_order, str):
        raise ConfigError(f"status order {status_order!r}: give a list of statuses, e.g. ['healed', 'open']")
    _check_px_per_mm(px_per_mm)
    by_list = [by] if isinstance(by, str) else list(by or [])
    _refuse_repeated_manuals(manuals)
    auto_res = read_auto(auto)
    readers: list[ManualReader] = []
    issues: list[Issue] = list(auto_res.issues)
    unmatched_rows: list[dict[str, str]] = []
    for i, manual in enumerate(manuals):
        name = names[i] if names and i < len(names) else None
        found, iss, unm = read_manual(manual, auto_res, name, px_per_mm, progress)
        readers.extend(found)
        issues.extend(iss)
        unmatched_rows.extend(unm)
    _unique_names(readers)
    _check_slugs([r.name for r in readers])
    for issue in issues:
        log.warning("%s", issue.line())
    # Automated photos without a manual measurement, per reader: listed, never dropped.
    for reader in readers:
        for key in auto_res.table.index.difference(list(reader.entries)):
            file = auto_res.table.at[key, "file"] if "file" in auto_res.table else ""
            unmatched_rows.append(
                {
                    "reader": reader.name,
                    "source": "auto",
                    "item": str(file),
                    "photo_sha256": auto_res.sha(key),
                    "reason": f"no manual measurement by {reader.name}",
                }
            )
    pairs = build_pairs(auto_res, readers)
    frames = comparison_frames(pairs, readers)
    agreement = agreement_table(frames)
    subgroups = {}
    for col in by_list:
        if col != AREA_RANGE and not any(col in f.columns for f in frames.values()):
            if col in auto_res.table.columns:
                for f in frames.values():
                    f[col] = auto_res.table[col].reindex(f.index).to_numpy()
            else:
                issues.append(Issue("--by", col, "no such column in the automated results"))
                continue
        subgroups[col] = agreement_table(frames, group=col)
    kappa, confusion = status_tables(pairs, [r.name for r in readers], status_order, issues)
    report = QAReport(
        out_dir=Path(out_dir),
        pairs=pairs,
        agreement=agreement,
        subgroups=subgroups,
        kappa=kappa,
        confusion=confusion,
        issues=issues,
        unmatched=pd.DataFrame(
            unmatched_rows, columns=["reader", "source", "item", "photo_sha256", "reason"]
        ),
        readers=[r.name for r in readers],
        n_auto_photos=len(auto_res.table),
        px_per_mm=px_per_mm,
        manual_sources=[Path(m) for m in manuals],
    )
    write_report(report, frames, auto_res, plots=plots)
    return report

"""Agreement statistics between two measurement methods (areas in mm²) or two raters.

Conventions: ``test`` and ``reference`` are paired 1-D arrays (same photo at the same index);
differences are ``test - reference`` (e.g. automated - manual), so a positive bias means the
test method measures larger areas. Non-finite pairs are dropped by :func:`paired`.

References:
- Bland JM, Altman DG. Statistical methods for assessing agreement between two methods of
  clinical measurement. Lancet 1986;1:307-310 (bias, limits of agreement, log-ratio method).
- Bland JM, Altman DG. Measuring agreement in method comparison studies. Stat Methods Med Res
  1999;8:135-160 (approximate CI of the limits of agreement).
- Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater reliability.
  Psychol Bull 1979;86:420-428 (ICC(1,1), ICC(2,1), ICC(3,1) and their F-based CIs).
- McGraw KO, Wong SP. Forming inferences about some intraclass correlation coefficients.
  Psychol Methods 1996;1:30-46 (CI of ICC(2,1)).
- Lin LI-K. A concordance correlation coefficient to evaluate reproducibility. Biometrics
  1989;45:255-268 (CCC and its Fisher-z confidence interval).
- Cohen J. Weighted kappa. Psychol Bull 1968;70:213-220 (linear/quadratic weights).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

Z95 = 1.959963984540054  # standard normal 97.5% quantile

Values = Sequence[float] | np.ndarray
"""Measured values: a sequence of numbers or a 1-D array (NaN allowed; see :func:`paired`)."""


def paired(test: Values, reference: Values) -> tuple[np.ndarray, np.ndarray]:
    """Float arrays of the pairs where both values are finite."""
    a = np.asarray(test, dtype=np.float64).ravel()
    b = np.asarray(reference, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in length: {a.size} vs {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


@dataclass(frozen=True)
class BlandAltman:
    """Bias and limits of agreement of ``test - reference`` (units of the data, e.g. mm²)."""

    n: int
    bias: float
    sd: float
    loa_low: float
    loa_high: float
    bias_ci_low: float
    bias_ci_high: float
    loa_low_ci: tuple[float, float]
    loa_high_ci: tuple[float, float]
    k: float


def bland_altman(test: Values, reference: Values, k: float = Z95) -> BlandAltman:
    """Bland-Altman bias, SD of differences and limits ``bias ± k·SD`` with 95% CIs.

    CI of the bias: t distribution; CI of each limit: ``SE = SD·sqrt(1/n + k²/(2(n-1)))``
    (Bland & Altman 1999). The 1986 paper used ``k = 2``; 1.96 is the usual choice.
    """
    a, b = paired(test, reference)
    n = int(a.size)
    nan = float("nan")
    if n == 0:
        return BlandAltman(0, nan, nan, nan, nan, nan, nan, (nan, nan), (nan, nan), k)
    d = a - b
    bias = float(d.mean())
    if n < 2:
        return BlandAltman(n, bias, nan, nan, nan, nan, nan, (nan, nan), (nan, nan), k)
    sd = float(d.std(ddof=1))
    t = float(sps.t.ppf(0.975, n - 1))
    se_bias = sd / math.sqrt(n)
    se_loa = sd * math.sqrt(1.0 / n + k**2 / (2.0 * (n - 1)))
    lo, hi = bias - k * sd, bias + k * sd
    return BlandAltman(
        n=n,
        bias=bias,
        sd=sd,
        loa_low=lo,
        loa_high=hi,
        bias_ci_low=bias - t * se_bias,
        bias_ci_high=bias + t * se_bias,
        loa_low_ci=(lo - t * se_loa, lo + t * se_loa),
        loa_high_ci=(hi - t * se_loa, hi + t * se_loa),
        k=k,
    )


@dataclass(frozen=True)
class RatioAgreement:
    """Bland-Altman on the log scale, back-transformed to percent: ``test/reference - 1``."""

    n: int
    n_dropped_zero: int  # pairs with a zero (or negative) area, where a ratio is undefined
    mean_log: float
    sd_log: float
    bias_pct: float
    loa_low_pct: float
    loa_high_pct: float


def bland_altman_ratio(test: Values, reference: Values, k: float = Z95) -> RatioAgreement:
    """Percent bias/limits from ``exp(mean ± k·sd of log(test/reference)) - 1``.

    Areas scale multiplicatively (error grows with size), so agreement of areas is usually
    reported on the log scale (Bland & Altman 1986, section 6). Zero areas are dropped.
    """
    a, b = paired(test, reference)
    pos = (a > 0) & (b > 0)
    dropped = int(a.size - pos.sum())
    r = np.log(a[pos] / b[pos])
    n = int(r.size)
    nan = float("nan")
    if n == 0:
        return RatioAgreement(0, dropped, nan, nan, nan, nan, nan)
    m = float(r.mean())
    s = float(r.std(ddof=1)) if n > 1 else nan
    return RatioAgreement(
        n=n,
        n_dropped_zero=dropped,
        mean_log=m,
        sd_log=s,
        bias_pct=_log_to_pct(m),
        loa_low_pct=_log_to_pct(m - k * s) if n > 1 else nan,
        loa_high_pct=_log_to_pct(m + k * s) if n > 1 else nan,
    )


def _log_to_pct(x: float) -> float:
    """``100 (exp(x) - 1)`` in %, inf where exp overflows (a ratio beyond 1e308)."""
    try:
        return 100.0 * math.expm1(x)
    except OverflowError:
        return math.inf


@dataclass(frozen=True)
class ICC:
    """Intraclass correlation (single rater) with its 95% CI."""

    icc: float
    ci_low: float
    ci_high: float


def intraclass_correlations(ratings: np.ndarray | pd.DataFrame) -> dict[str, ICC]:
    """ICC(1,1), ICC(2,1) and ICC(3,1) (Shrout & Fleiss 1979) for an (n targets x k raters) table.

    ICC(2,1) ("ICC2", two-way random, absolute agreement) is the one to report for agreement
    of methods; ICC(3,1) ("ICC3", two-way mixed, consistency) ignores a constant bias.
    Rows with a missing rating are dropped. 95% CIs from the F distribution (Shrout & Fleiss
    1979; McGraw & Wong 1996 for ICC(2,1)), the formulas of pingouin.intraclass_corr.
    """
    arr = np.asarray(ratings, dtype=np.float64)
    arr = arr[np.all(np.isfinite(arr), axis=1)]
    nan = ICC(float("nan"), float("nan"), float("nan"))
    if arr.ndim != 2 or arr.shape[0] < 3 or arr.shape[1] < 2 or np.ptp(arr) == 0:
        return {"ICC1": nan, "ICC2": nan, "ICC3": nan}
    n, k = arr.shape
    grand = arr.mean()
    ss_rows = k * float(np.sum((arr.mean(axis=1) - grand) ** 2))  # between targets
    ss_cols = n * float(np.sum((arr.mean(axis=0) - grand) ** 2))  # between raters
    ss_err = float(np.sum((arr - grand) ** 2)) - ss_rows - ss_cols
    # numpy floats: perfect agreement or a constant offset (mse = 0) divides by zero, which
    # gives inf/nan as in pingouin instead of a Python ZeroDivisionError
    msr, msc = np.float64(ss_rows / (n - 1)), np.float64(ss_cols / (k - 1))
    mse = np.float64(ss_err / ((n - 1) * (k - 1)))
    msw = np.float64((ss_cols + ss_err) / (n * (k - 1)))
    q = 0.975  # two-sided 95%

    def f_ppf(d1: float, d2: float) -> float:
        return float(sps.f.ppf(q, d1, d2))

    with np.errstate(divide="ignore", invalid="ignore"):
        icc1 = (msr - msw) / (msr + (k - 1) * msw)
        f1 = msr / msw
        f1l, f1u = f1 / f_ppf(n - 1, n * (k - 1)), f1 * f_ppf(n * (k - 1), n - 1)
        icc3 = (msr - mse) / (msr + (k - 1) * mse)
        f3 = msr / mse
        f3l, f3u = f3 / f_ppf(n - 1, (n - 1) * (k - 1)), f3 * f_ppf((n - 1) * (k - 1), n - 1)
        icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        fj = msc / mse
        vn = (k - 1) * (n - 1) * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        vd = (n - 1) * k**2 * icc2**2 * fj**2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        v = vn / vd
        f2u, f2l = f_ppf(n - 1, v), f_ppf(v, n - 1)
        lo2 = n * (msr - f2u * mse) / (f2u * (k * msc + (k * n - k - n) * mse) + n * msr)
        hi2 = n * (f2l * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f2l * msr)
        return {
            "ICC1": ICC(float(icc1), float((f1l - 1) / (f1l + k - 1)), float((f1u - 1) / (f1u + k - 1))),
            "ICC2": ICC(float(icc2), float(lo2), float(hi2)),
            "ICC3": ICC(float(icc3), float((f3l - 1) / (f3l + k - 1)), float((f3u - 1) / (f3u + k - 1))),
        }


@dataclass(frozen=True)
class CCC:
    """Lin's concordance correlation coefficient with a 95% CI (Fisher z, Lin 1989)."""

    ccc: float
    ci_low: float
    ci_high: float


def lins_ccc(x: Values, y: Values) -> CCC:
    """Lin's CCC ``2·s_xy / (s_x² + s_y² + (mean_x - mean_y)²)`` with 1/n moments (Lin 1989).

    CI: ``z = atanh(ccc)`` with the asymptotic variance of Lin (1989, eq. 9 as corrected in
    Lin 2000), as implemented e.g. in R epiR::epi.ccc.
    """
    a, b = paired(x, y)
    n = a.size
    nan = float("nan")
    if n < 3:
        return CCC(nan, nan, nan)
    mx, my = a.mean(), b.mean()
    sx2, sy2 = a.var(), b.var()  # 1/n moments, as in Lin (1989)
    sxy = float(np.mean((a - mx) * (b - my)))
    denom = sx2 + sy2 + (mx - my) ** 2
    if denom == 0:
        return CCC(nan, nan, nan)
    rc = 2.0 * sxy / denom
    r = sxy / math.sqrt(sx2 * sy2) if sx2 > 0 and sy2 > 0 else nan
    if not np.isfinite(r) or abs(rc) >= 1 or r == 0:
        return CCC(float(rc), nan, nan)
    u = (mx - my) / (sx2 * sy2) ** 0.25
    var_z = (
        (1 - r**2) * rc**2 / ((1 - rc**2) * r**2)
        + 2 * rc**3 * (1 - rc) * u**2 / (r * (1 - rc**2) ** 2)
        - rc**4 * u**4 / (2 * r**2 * (1 - rc**2) ** 2)
    ) / (n - 2)
    z = math.atanh(rc)
    se = math.sqrt(max(var_z, 0.0))
    return CCC(float(rc), math.tanh(z - Z95 * se), math.tanh(z + Z95 * se))


def correlations(x: Values, y: Values) -> dict[str, float]:
    """Pearson r and Spearman rho with their two-sided p-values (scipy.stats)."""
    a, b = paired(x, y)
    nan = float("nan")
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"pearson_r": nan, "pearson_p": nan, "spearman_rho": nan, "spearman_p": nan}
    pr = sps.pearsonr(a, b)
    sr = sps.spearmanr(a, b)
    return {
        "pearson_r": float(pr.statistic),
        "pearson_p": float(pr.pvalue),
        "spearman_rho": float(sr.statistic),
        "spearman_p": float(sr.pvalue),
    }


def error_summary(test: Values, reference: Values) -> dict[str, float]:
    """Mean absolute error (units of data) and mean (absolute) relative error (fraction).

    Relative errors are ``(test - reference) / reference`` over pairs with reference > 0.
    """
    a, b = paired(test, reference)
    nan = float("nan")
    pos = b > 0
    rel = (a[pos] - b[pos]) / b[pos]
    return {
        "mae": float(np.mean(np.abs(a - b))) if a.size else nan,
        "mean_rel_error": float(rel.mean()) if rel.size else nan,
        "mean_abs_rel_error": float(np.abs(rel).mean()) if rel.size else nan,
        "n_rel": int(rel.size),
    }


# --------------------------------------------------------------------------- categorical


def confusion_table(
    rater_a: Sequence[Any], rater_b: Sequence[Any], categories: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Counts with rater A in rows and rater B in columns (missing values dropped)."""
    pairs = [(a, b) for a, b in zip(rater_a, rater_b, strict=True) if _present(a) and _present(b)]
    if categories is None:
        categories = sorted({p[0] for p in pairs} | {p[1] for p in pairs}, key=str)
    cats = list(categories)
    table = pd.DataFrame(0, index=pd.Index(cats, name="a"), columns=pd.Index(cats, name="b"))
    for a, b in pairs:
        if a not in table.index or b not in table.columns:
            raise ValueError(f"category {a if a not in table.index else b!r} not in {cats}")
        table.loc[a, b] += 1
    return table


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v) != ""


def cohens_kappa(table: np.ndarray | pd.DataFrame, weights: str | None = None) -> float:
    """Cohen's kappa from a square confusion table; ``weights`` None, "linear" or "quadratic".

    ``kappa = 1 - sum(w·observed) / sum(w·expected)`` with disagreement weights
    ``w_ij = |i-j|`` (linear) or ``(i-j)²`` (quadratic) over ordered categories, or
    ``w_ij = [i != j]`` unweighted (Cohen 1960, 1968).
    """
    obs = np.asarray(table, dtype=np.float64)
    if obs.ndim != 2 or obs.shape[0] != obs.shape[1]:
        raise ValueError("confusion table must be square")
    total = obs.sum()
    if total == 0:
        return float("nan")
    p = obs / total
    expected = np.outer(p.sum(axis=1), p.sum(axis=0))
    i, j = np.indices(obs.shape)
    if weights is None:
        w = (i != j).astype(np.float64)
    elif weights == "linear":
        w = np.abs(i - j).astype(np.float64)
    elif weights == "quadratic":
        w = ((i - j) ** 2).astype(np.float64)
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")
    denom = float((w * expected).sum())
    if denom == 0:
        return float("nan")
    return 1.0 - float((w * p).sum()) / denom


# --------------------------------------------------------------------------- tables


def agreement_row(
    test: Values,
    reference: Values,
    dice: Values | None = None,
    iou: Values | None = None,
    k: float = Z95,
) -> dict[str, float]:
    """All continuous agreement statistics of one comparison as a flat dict (one table row)."""
    a, b = paired(test, reference)
    ba = bland_altman(a, b, k)
    ratio = bland_altman_ratio(a, b, k)
    iccs = intraclass_correlations(np.c_[a, b]) if a.size else {}
    ccc = lins_ccc(a, b)
    nan = float("nan")
    row: dict[str, float] = {
        "n": ba.n,
        "mean_test_mm2": float(a.mean()) if a.size else nan,
        "mean_reference_mm2": float(b.mean()) if b.size else nan,
        "bias_mm2": ba.bias,
        "bias_ci_low_mm2": ba.bias_ci_low,
        "bias_ci_high_mm2": ba.bias_ci_high,
        "sd_diff_mm2": ba.sd,
        "loa_low_mm2": ba.loa_low,
        "loa_high_mm2": ba.loa_high,
        "n_ratio": ratio.n,
        "n_dropped_zero": ratio.n_dropped_zero,
        "bias_pct": ratio.bias_pct,
        "loa_low_pct": ratio.loa_low_pct,
        "loa_high_pct": ratio.loa_high_pct,
    }
    for key in ("ICC2", "ICC3"):
        v = iccs.get(key, ICC(nan, nan, nan))
        row[key.lower()] = v.icc
        row[f"{key.lower()}_ci_low"] = v.ci_low
        row[f"{key.lower()}_ci_high"] = v.ci_high
    row.update({"ccc": ccc.ccc, "ccc_ci_low": ccc.ci_low, "ccc_ci_high": ccc.ci_high})
    row.update(correlations(a, b))
    row.update(error_summary(a, b))
    for name, values in (("dice", dice), ("iou", iou)):
        kept = np.asarray([] if values is None else values, dtype=np.float64)
        kept = kept[np.isfinite(kept)]
        row[f"n_{name}"] = int(kept.size)
        row[f"{name}_mean"] = float(kept.mean()) if kept.size else nan
        row[f"{name}_median"] = float(np.median(kept)) if kept.size else nan
        row[f"{name}_min"] = float(kept.min()) if kept.size else nan
    return row


def kappa_row(
    rater_a: Sequence[Any], rater_b: Sequence[Any], order: Sequence[Any] | None = None
) -> dict[str, Any]:
    """Observed agreement and Cohen's kappa (weighted too when ``order`` ranks the categories)."""
    table = confusion_table(rater_a, rater_b, order)
    obs = table.to_numpy(dtype=np.float64)
    n = int(obs.sum())
    row: dict[str, Any] = {
        "n": n,
        "categories": ";".join(str(c) for c in table.index),
        "observed_agreement": float(np.trace(obs) / n) if n else float("nan"),
        "kappa": cohens_kappa(obs),
        "kappa_linear": cohens_kappa(obs, "linear") if order is not None else float("nan"),
        "kappa_quadratic": cohens_kappa(obs, "quadratic") if order is not None else float("nan"),
    }
    return row


AREA_BINS_MM2 = (0.0, 5.0, 10.0, 25.0, 50.0, math.inf)


def area_range_labels(
    test: Values,
    reference: Values,
    edges: Sequence[float] = AREA_BINS_MM2,
    basis: str = "reference",
) -> list[str]:
    """Area-range label (mm²) per pair, from the reference area (default) or the mean of both.

    Binning by the reference answers the usual QA-plan question ("how good is it on ulcers
    under 5 mm² by manual tracing?"); ``basis="mean"`` bins by the mean of both methods, which
    avoids a spurious trend of the difference with size (Bland & Altman 1995).
    """
    b = np.asarray(reference, dtype=np.float64)
    if basis == "mean":
        values = (np.asarray(test, dtype=np.float64) + b) / 2.0
    elif basis == "reference":
        values = b
    else:
        raise ValueError(f"basis must be 'reference' or 'mean', not {basis!r}")
    labels = []
    for m in values:
        if not np.isfinite(m):
            labels.append("")
            continue
        for lo, hi in itertools.pairwise(edges):
            if lo <= m < hi:
                labels.append(f">={lo:g}" if math.isinf(hi) else f"{lo:g}-{hi:g}")
                break
        else:
            labels.append(f"<{edges[0]:g}")
    return labels

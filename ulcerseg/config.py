"""Typed, validated configuration: the pipeline config (YAML files in ``configs/``) and the one
validator, :func:`build_dataclass`, that every configuration-like file goes through (pipeline,
healing and training configs, model cards, ``dataset.yaml``).

Every section is a frozen dataclass; loading rejects unknown keys, wrong types and non-finite
numbers, and checks ranges declared next to the field (``Annotated[float, Check(gt=0)]``),
with a one-line :class:`ConfigError` ``FILE: key 'section.name': problem``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

from ulcerseg.errors import ConfigError, first_line

T = TypeVar("T")

log = logging.getLogger(__name__)


# upper bound of thread counts (network threads, photos in flight): more threads than a
# machine has cores only costs memory; 100,000 made `measure` hang creating threads
MAX_THREADS = 256


@dataclass(frozen=True)
class Check:
    """Range of a numeric config value, declared with the field: ``Annotated[float, Check(gt=0)]``."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value`` (None if it is in range)."""
        for bound, ok, word in (
            (self.gt, lambda b: value > b, ">"),
            (self.ge, lambda b: value >= b, ">="),
            (self.lt, lambda b: value < b, "<"),
            (self.le, lambda b: value <= b, "<="),
        ):
            if bound is not None and not ok(bound):
                # whole bounds in full: a seed's 2**32 - 1 read "4.29497e+09"
                shown = f"{int(bound)}" if float(bound).is_integer() else f"{bound:g}"
                return f"must be {word} {shown}, got {value!r}"
        return None


#: common constraints
Positive = Annotated[float, Check(gt=0)]
MIN_GRID_PX_PER_MM, MAX_GRID_PX_PER_MM = 2.0, 50.0  # the rectified grid's resolution, px/mm
# resize factors a dataset's images are evaluated or trained at (``evaluate --scale``, and the
# model's px/mm over the dataset's): 0.001 asked OpenCV for a 1.2 TB image, 1e-5 scored a few px
MIN_SCALE, MAX_SCALE = 0.01, 100.0
PositiveInt = Annotated[int, Check(ge=1)]
NonNegative = Annotated[float, Check(ge=0)]


@dataclass(frozen=True)
class MarkerConfig:
    """Printed calibration marker (OpenCV ArUco/AprilTag)."""

    dictionary: str = "DICT_4X4_50"
    ids: tuple[Annotated[int, Check(ge=0)], ...] = (0,)
    side_mm: float = 10.0  # outer edge of the black square
    detect_max_side_px: Annotated[int, Check(ge=64)] = 1600  # detection runs on a downscaled copy


@dataclass(frozen=True)
class DiscoveryConfig:
    """How photos are found: ``<root>/<subject>/<visit>/<photo>`` or a manifest CSV."""

    ulcer_pattern: str = r"^(?P<ulcer_id>.+)$"  # applied to the file stem
    # HEIC/HEIF: what iPhones (and some Android phones) save by default; AVIF its AV1 sibling
    extensions: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".heic", ".heif", ".avif")
    ignore: tuple[str, ...] = (".*", "_*", "ground_truth*")  # folder/file name globs never read
    # visit labels that are not D<n>/W<n>, mapped to one (case-insensitive), e.g. {baseline: D0}
    visit_aliases: dict[str, str] = field(default_factory=dict)


# test-time augmentation modes (segmentation.inference.with_flip_tta): passes 1, 2 and 4
TTA_MODES = ("none", "hflip", "flips")


@dataclass(frozen=True)
class SegmentationConfig:
    """Model and inference settings; ``None`` means: take it from the model card."""

    model: str = "models/default"
    backend: str = "auto"  # auto | torch | onnx
    threshold: float | None = None
    px_per_mm: float | None = None  # rectified resolution; None -> model card
    search_radius_mm: float = 45.0  # region around the marker centre that is searched
    # coarse pass at this fraction of px_per_mm; at 0.5 ulcers under ~7 mm² were missed on
    # synthetic finger photos (7-9 of 11 found), 0.75 finds all at 2.3x the segmentation time
    coarse_factor: float = 0.75
    # candidate regions: coarse probability above this
    coarse_threshold: Annotated[float, Check(gt=0, lt=1)] = 0.25
    # int8: the coarse pass runs the model folder's int8 copy of model.onnx (``ulcerseg export
    # --coarse-int8``) when it has a current one, whatever coarse_network says; float: the
    # coarse_network. Float by default: on the end-to-end benchmark int8 lost a 45 mm² ulcer
    # the float pass found, for 1.2x coarse speed
    coarse_precision: str = "float"
    # light: the coarse pass runs the model folder's light network (the full network's encoder
    # plus a head distilled from it, ``ulcerseg export --coarse-light``; ONNX backend) when it
    # has a current one, else the full network. The default model's light network (encoder
    # head) costs ~1/4 of the full network's coarse pass; with recentre_crop its candidates
    # give the full network's areas (README: end-to-end figures, throughput)
    coarse_network: str = "light"
    # not a setting: the SHA-256 of the light or int8 coarse network that ran, filled in from
    # the model card when measuring so that the recorded config names it (null: the full
    # network ran). A value given in a config file must match the model folder's
    coarse_network_sha256: str | None = None
    # when no coarse candidate is confirmed by a fine pass, search the region once more at full
    # resolution (px_per_mm) before reporting no_ulcer_found, the finding of a healed ulcer:
    # small ulcers can vanish at the coarse scale. Costs a full-resolution pass on such photos
    recheck_full_resolution: bool = True
    crop_margin_mm: NonNegative = 4.0  # margin around candidates for the fine pass
    max_candidates: int = 3  # fine passes on at most this many candidate regions
    # choosing the ulcer (segmentation/candidates.py): candidates off the body (skin mask) keep
    # this fraction of their score; beyond this distance from the marker centre scores decay
    candidate_off_body_weight: Annotated[float, Check(ge=0, le=1)] = 0.1
    candidate_max_distance_mm: NonNegative = 35.0
    white_balance: str = "none"  # "marker": neutralise the colour cast using the marker's white border
    tta: str = "none"  # test-time augmentation: none | hflip (2 passes) | flips (4 passes)
    min_area_mm2: NonNegative = 0.3  # smaller components are dropped
    merge_distance_mm: NonNegative = 3.0  # components this close to the main one belong to it
    uncertainty_delta: float = 0.1  # area band = areas at threshold -/+ delta
    # 90% area interval (area_low_mm2 .. area_high_mm2), split-conformal on the end-to-end
    # benchmark's calibration part (scripts/bench_endtoend.py --fit-interval): with
    # b = (band area at threshold - delta minus at + delta) / area and s = interval_floor + b,
    # the interval is area x exp(interval_q_low x s) .. area x exp(interval_q_high x s).
    # null q's: the raw band itself (areas at threshold +/- delta, not a calibrated interval)
    interval_floor: NonNegative = 0.1
    interval_q_low: float | None = -2.966  # fitted: bench_endtoend.py --n 160 --fit-interval
    interval_q_high: float | None = 3.462
    threads: int = 1  # CPU threads of each network pass (intra-op)
    # photos measured at the same time (threads; results do not depend on it): on 2 cores,
    # 2 photos with 1 thread each keep both cores busier than 1 photo with 2 threads
    parallel_photos: int = 2
    # cpu, or cuda / cuda:N (torch backend): the photo workers' tiles then run as shared
    # batches of gpu_batch_size tiles of the model's tile size, fewer of larger inputs
    # (segmentation/batching.py); raise parallel_photos with it
    device: str = "cpu"
    gpu_batch_size: int = 16
    # JPEG photos are decoded at 1/2, 1/4 or 1/8 size (DCT scaling, a fraction of a full
    # decode's cost) when at least this many decoded px per fine-pass px remain at the marker;
    # rectification averages the photo down to 2 px per grid px anyway. 0: always full size
    min_decode_oversampling: NonNegative = 2.0
    # one more fine pass on the left-right mirrored ulcer crop: how far the two masks disagree
    # (the tta_disagreement signal, quality.max_tta_disagreement) predicts area error
    mirror_check: bool = True
    # with mirror_check: the measured probability is the mean of the crop's and its mirror
    # image's (flip TTA on the fine pass only, at no extra cost), or the crop's own where the
    # mean loses the ulcer. On the end-to-end benchmark (640 photos): p90 |area error| 76% ->
    # 59%, bias +5.1% -> -0.8%, median 14.6% -> 14.3%, found unchanged (README)
    mirror_average: bool = True
    # after the ulcer is chosen, its crop is placed once more around the fine pass's own mask
    # (plus crop_margin_mm), on a crop_lattice_mm lattice of the marker plane, and segmented
    # again: the measured area then depends on the ulcer, not on where the coarse pass's
    # candidate box happened to fall (which moved areas by several % between coarse settings),
    # so the light and the full coarse network, coarse factors and backends give the same area
    # on ~90% of photos. The first crops lie on the same lattice: where the fine mask's box
    # snaps to the candidate's grid (most photos) no extra pass runs
    recentre_crop: bool = True
    crop_lattice_mm: Annotated[float, Check(gt=0)] = 2.0


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the per-photo quality flags."""

    max_tilt_deg: Annotated[float, Check(ge=0, le=90)] = 50.0
    min_photo_px_per_mm: NonNegative = 8.0  # native photo resolution at the marker
    max_marker_residual_px: NonNegative = 2.0
    # marker_distorted above this bend of the marker's cells (calibration.marker.cell_bend, about
    # the relative area error): a 10 mm sticker on a finger of 10 mm radius photographed head on
    # from 8 cm reads 0.055 and gives areas 7% too large (edge residual 0.1 px); flat markers of
    # 100 synthetic photos at 7-16 px/mm stay under 0.016 but one motion-blurred at 7.5 px/mm
    # (0.04)
    max_marker_bend: NonNegative = 0.03
    max_marker_distance_mm: NonNegative = 40.0
    # no_ulcer_found is evidence of healing only if the photo shows the ulcer's site: the disc of
    # search_site_radius_mm around the marker centre (the protocol places the marker beside the
    # ulcer). search_incomplete when less than min_search_coverage of it is in the photo; on the
    # sample and synthetic trials every photo shows >= 0.88 of a 20 mm disc, a marker at the
    # photo's edge about half
    search_site_radius_mm: NonNegative = 20.0
    min_search_coverage: Annotated[float, Check(ge=0, le=1)] = 0.75
    min_sharpness: NonNegative = 15.0  # variance of Laplacian in the rectified frame
    # fraction of the ulcer's neighbourhood blown out to white (every channel >= 250; crushed
    # to black: luma <= 5); 0.5 because on the end-to-end benchmark clipping there did not
    # predict area error (26% of photos exceeded 0.05)
    max_clipped_fraction: Annotated[float, Check(ge=0, le=1)] = 0.5
    min_mean_luma: Annotated[float, Check(ge=0, le=255)] = 40.0
    # a neighbourhood darker than min_mean_luma is underexposed only where the marker's white
    # paper is darker than this too (median luma): deeply pigmented skin in a well-exposed photo
    # is as dark as min_mean_luma (the end-to-end benchmark rendered with dark skin: 17% of
    # photos), while the paper of a photo exposed for it stays far above this. A photo without
    # the paper in view is judged on the neighbourhood alone
    min_marker_white_luma: Annotated[float, Check(ge=0, le=255)] = 100.0
    max_mean_luma: Annotated[float, Check(ge=0, le=255)] = 225.0
    # thresholds below fitted on the end-to-end benchmark's calibration part (scripts/
    # bench_endtoend.py --n 160 --seed 0 1 2 3 --fit-flags: default model and pipeline, 315
    # photos); the fit keeps the base where tightening a rule does not pay (0.6, 0.5, 0.0)
    min_mean_probability: Annotated[float, Check(ge=0, le=1)] = 0.6
    max_uncertainty_ratio: NonNegative = 0.5  # (area at threshold - delta - area at + delta) / area
    min_boundary_margin: NonNegative = 0.0  # low_confidence below this mean |p - threshold| on the boundary
    max_candidate_ambiguity: NonNegative = 0.45  # ambiguous_ulcer above this 2nd/1st candidate score ratio
    min_on_body_fraction: Annotated[float, Check(ge=0, le=1)] = (
        0.0  # ambiguous_ulcer below this on-body fraction
    )
    # low_confidence above this 1 - Dice between the masks of the photo and of its mirror image
    # (segmentation.mirror_check); 1: never. The signal that best predicts area error on the
    # benchmark (Spearman 0.55 with |log area ratio|)
    max_tta_disagreement: Annotated[float, Check(ge=0, le=1)] = 0.1293
    # dark_bed above this fraction of the measured outline darker (CIE L*) than
    # dark_bed_luma_ratio x the median of the skin 1-3 mm around it; 1: never. Black eschar and
    # dry crust: the network outlines them too small (end to end with an eschar centre: bias
    # -28.7%, a change to a plain render of the same wound +31% that is not there). On the
    # benchmark it flags 4.9% more of the ordinary photos and 55% more of the eschar-centred
    max_dark_bed_fraction: Annotated[float, Check(ge=0, le=1)] = 0.5
    dark_bed_luma_ratio: Annotated[float, Check(gt=0, lt=1)] = 0.45
    # a pixel of the outline is dark also where its luma is below this x the marker's white
    # paper (0: the skin alone decides). On deeply pigmented skin the skin is nearly as dark as
    # eschar, so the skin's ratio misses it (benchmark, eschar centres on dark skin: 17.5% flagged
    # against 65% on the photos' own skin); the paper is the same on any skin. Only the outline's
    # pixels count: 0.2 in sRGB luma is about 4% of the paper's reflectance in linear light,
    # where black eschar lies and a red or yellow bed does not (median of the measured beds on
    # the dark-skin benchmark 0.42). Chosen on the benchmark's calibration part
    # (scripts/bench_endtoend.py --skin-tone dark [--wound-centre eschar])
    dark_bed_paper_ratio: Annotated[float, Check(ge=0, lt=1)] = 0.2


@dataclass(frozen=True)
class OutputConfig:
    write_overlays: bool = True
    write_rectified: bool = True


# settings that change how fast, never what, is measured (README, speed settings): not hashed
EXECUTION_ONLY: dict[str, tuple[str, ...]] = {"segmentation": ("threads", "parallel_photos")}
# the model folder's path: the model is identified by its checksum (``model_sha256``, recorded
# and compared beside the config's), so one model named as models/default or by an absolute
# path is one configuration (before 0.3.3, two: the study was measured again)
IDENTIFIED_BY_CHECKSUM: dict[str, tuple[str, ...]] = {"segmentation": ("model",)}


@dataclass(frozen=True)
class PipelineConfig:
    """The whole measurement configuration; its hash is recorded with every output row."""

    marker: MarkerConfig = field(default_factory=MarkerConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def sha256(self) -> str:
        """Hash of the canonical JSON form: identical settings give identical hashes.

        The settings of how many threads do the work (:data:`EXECUTION_ONLY`) are left out: the
        numbers do not depend on them, so another ``--threads`` or ``--parallel-photos`` gives the
        same ``config_sha256`` (a resume keeps the rows; ``measurements.csv`` is the same). So is
        the model's path (:data:`IDENTIFIED_BY_CHECKSUM`): the model's own checksum names it.
        """
        data = self.to_dict()
        for left_out in (EXECUTION_ONLY, IDENTIFIED_BY_CHECKSUM):
            for section, keys in left_out.items():
                for key in keys:
                    data[section].pop(key, None)
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _fits_float(value: int) -> bool:
    """Whether an integer converts to a finite float (``float(10**400)`` raises OverflowError)."""
    try:
        float(value)
    except OverflowError:
        return False
    return True


_EXPONENT_WITHOUT_POINT = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")


def _coerce(value: Any, tp: Any, source: str, key: str) -> Any:
    """Check/convert one value against its annotated type; errors name source and dotted key."""

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{source}: key {key!r}: {problem}")

    origin = typing.get_origin(tp)
    if origin is Annotated:
        inner, *extras = typing.get_args(tp)
        out = _coerce(value, inner, source, key)
        for check in extras:
            problem = check.problem(out) if isinstance(check, Check) and out is not None else None
            if problem:
                raise fail(problem)
        return out
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a dataclass type (tp is a hint)
        if not isinstance(value, dict):
            raise fail(f"expected a mapping, got {type(value).__name__}")
        return build_dataclass(tp, value, source, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        last: ConfigError | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, source, key)
            except ConfigError as err:
                last = err
        raise last or fail(f"invalid value {value!r}")
    if origin in (dict, collections.abc.Mapping):
        key_tp, value_tp = typing.get_args(tp)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise fail(f"expected a mapping, got {value!r}")
        return {
            _coerce(k, key_tp, source, key): _coerce(v, value_tp, source, f"{key}.{k}")
            for k, v in value.items()
        }
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise fail(f"expected a list, got {type(value).__name__}")
        return [_coerce(v, item_tp, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str | int | float):
            value = [value]
        if not isinstance(value, list | tuple):
            raise fail(f"expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: any length
            item_types = [args[0]] * len(value)
        elif len(value) != len(args):
            raise fail(f"expected a list of {len(args)} values, got {len(value)}")
        else:
            item_types = list(args)
        pairs = enumerate(zip(value, item_types, strict=True))
        return tuple(_coerce(v, t, source, f"{key}[{i}]") for i, (v, t) in pairs)
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(f"expected true/false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            if isinstance(value, str) and _EXPONENT_WITHOUT_POINT.fullmatch(value.strip()):
                # YAML 1.1 (PyYAML) reads 1e-3 as text: only 1.0e-3 is a number
                mantissa, exponent = value.strip().lower().split("e")
                hint = f"; YAML reads it as text: write {mantissa}.0e{exponent}"
                raise fail(f"expected a number, got {value!r}{hint}")
            raise fail(f"expected a number, got {value!r}")
        if isinstance(value, int) and not _fits_float(value):  # float() would raise OverflowError
            raise fail("expected a finite number, got an integer beyond the float range")
        if not math.isfinite(value):
            raise fail(f"expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"expected an integer, got {value!r}")
        return int(value)  # a plain int, also of a YamlInt
    if tp is str:
        if isinstance(value, int) and not isinstance(value, bool):
            # IDs such as 101 are read from YAML as integers; 001 keeps its text (YamlInt)
            return value.text if isinstance(value, YamlInt) else str(value)
        if not isinstance(value, str):
            raise fail(f"expected a string, got {value!r}")
        return value
    raise fail(f"unsupported type {tp}")  # pragma: no cover - programming error


def build_dataclass(
    cls: type[T], data: dict[str, Any], source: str, prefix: str = "", unknown_keys: str = "error"
) -> T:
    """Build a (nested) frozen dataclass from a mapping, checking types, finiteness and ranges.

    Unknown keys are an error (``unknown_keys="error"``) or are logged and dropped ("warn", for
    files written by newer versions such as model cards). Required fields (no default) must be
    present. Errors read ``SOURCE: key 'section.name': problem`` (one line).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = {f.name for f in fields}
    unknown = sorted(set(map(str, data)) - names)
    if unknown and unknown_keys == "warn":
        log.warning("%s: ignoring unknown keys %s", source, [f"{prefix}{k}" for k in unknown])
        data = {k: v for k, v in data.items() if str(k) in names}
    elif unknown:
        allowed = ", ".join(sorted(names))
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}' (allowed: {allowed})")
    for f in fields:
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.init and f.name not in data:
            raise ConfigError(f"{source}: missing key '{prefix}{f.name}'")
    kwargs = {k: _coerce(v, hints[k], source, f"{prefix}{k}") for k, v in data.items()}
    return cls(**kwargs)


def _validate(cfg: PipelineConfig, source: str) -> None:
    checks = [
        (cfg.marker.side_mm > 0, "marker.side_mm must be > 0"),
        # else the error named no file and no key (": no model folder with model.json found")
        (cfg.segmentation.model.strip() != "", "segmentation.model must name a model folder"),
        (len(cfg.marker.ids) > 0, "marker.ids must list at least one marker ID"),
        (
            cfg.segmentation.backend in {"auto", "torch", "onnx"},
            "segmentation.backend must be auto, torch or onnx",
        ),
        (
            cfg.segmentation.threshold is None or 0 < cfg.segmentation.threshold < 1,
            "segmentation.threshold must be between 0 and 1",
        ),
        (
            # a measured grid of the ulcer's site at 1000 px/mm asked for 13 GB per photo; below
            # 2 px/mm an ulcer is a few px: every photo "no ulcer found"
            cfg.segmentation.px_per_mm is None
            or MIN_GRID_PX_PER_MM <= cfg.segmentation.px_per_mm <= MAX_GRID_PX_PER_MM,
            f"segmentation.px_per_mm must be {MIN_GRID_PX_PER_MM:g}-{MAX_GRID_PX_PER_MM:g} "
            "(or unset: the model's)",
        ),
        (0 < cfg.segmentation.coarse_factor <= 1, "segmentation.coarse_factor must be in (0, 1]"),
        (cfg.segmentation.search_radius_mm > 0, "segmentation.search_radius_mm must be > 0"),
        (1 <= cfg.segmentation.threads <= MAX_THREADS, f"segmentation.threads must be 1-{MAX_THREADS}"),
        (
            1 <= cfg.segmentation.parallel_photos <= MAX_THREADS,
            f"segmentation.parallel_photos must be 1-{MAX_THREADS}",
        ),
        (cfg.segmentation.gpu_batch_size >= 1, "segmentation.gpu_batch_size must be >= 1"),
        (
            re.fullmatch(r"cpu|cuda(:\d+)?", cfg.segmentation.device) is not None,
            "segmentation.device must be cpu, cuda or cuda:N",
        ),
        (
            cfg.segmentation.device == "cpu" or cfg.segmentation.backend in {"auto", "torch"},
            "segmentation.device cuda needs the torch backend (segmentation.backend: torch or auto)",
        ),
        (cfg.segmentation.max_candidates >= 1, "segmentation.max_candidates must be >= 1"),
        (
            cfg.segmentation.coarse_precision in {"int8", "float"},
            "segmentation.coarse_precision must be int8 or float",
        ),
        (
            cfg.segmentation.coarse_network in {"full", "light"},
            "segmentation.coarse_network must be full or light",
        ),
        (
            cfg.segmentation.white_balance in {"none", "marker"},
            "segmentation.white_balance must be none or marker",
        ),
        (
            cfg.segmentation.tta in TTA_MODES,
            f"segmentation.tta must be {', '.join(TTA_MODES[:-1])} or {TTA_MODES[-1]}",
        ),
        (
            0 <= cfg.segmentation.uncertainty_delta < 0.5,
            "segmentation.uncertainty_delta must be in [0, 0.5)",
        ),
        # one null alone silently turned the calibrated interval into the raw band
        (
            (cfg.segmentation.interval_q_low is None) == (cfg.segmentation.interval_q_high is None),
            "segmentation.interval_q_low and segmentation.interval_q_high must both be numbers or both null",
        ),
        (
            cfg.segmentation.interval_q_low is None
            or cfg.segmentation.interval_q_high is None
            or cfg.segmentation.interval_q_low <= cfg.segmentation.interval_q_high,
            "segmentation.interval_q_low must be <= segmentation.interval_q_high",
        ),
        # else every photo is flagged overexposed or underexposed
        (
            cfg.quality.min_mean_luma < cfg.quality.max_mean_luma,
            "quality.min_mean_luma must be below quality.max_mean_luma",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{source}: {message}")
    try:
        pattern = re.compile(cfg.discovery.ulcer_pattern)
    except re.error as err:
        raise ConfigError(f"{source}: discovery.ulcer_pattern is not a valid regex ({err})") from err
    if "ulcer_id" not in pattern.groupindex:
        raise ConfigError(f"{source}: discovery.ulcer_pattern needs a named group (?P<ulcer_id>...)")
    from ulcerseg.calibration.aruco import aruco_dictionary

    n_ids = aruco_dictionary(cfg.marker.dictionary, source).bytesList.shape[0]
    outside = [i for i in cfg.marker.ids if not 0 <= i < n_ids]
    if outside:  # else every photo would fail as no_marker (exit 1) instead of one config error
        raise ConfigError(
            f"{source}: marker.ids {outside} are not in {cfg.marker.dictionary} (IDs 0..{n_ids - 1})"
        )
    from ulcerseg.visits import is_visit_label

    for name, target in cfg.discovery.visit_aliases.items():  # here, where the file is known
        if not is_visit_label(str(target)):
            raise ConfigError(
                f"{source}: key 'discovery.visit_aliases.{name}': {target!r} is not a visit label "
                "(D<n> or W<n>)"
            )
    extensions = cfg.discovery.extensions
    if not extensions or not all(re.fullmatch(r"\.[A-Za-z0-9]+", str(e)) for e in extensions):
        raise ConfigError(
            f"{source}: discovery.extensions must list extensions such as .jpg, got {list(extensions)!r}"
        )


def config_from_dict(data: dict[str, Any] | None, source: str = "<config>") -> PipelineConfig:
    """Validate a mapping (e.g. parsed YAML) into a :class:`PipelineConfig`."""
    cfg = build_dataclass(PipelineConfig, data or {}, source)
    _validate(cfg, source)
    return cfg


class _DuplicateKey(Exception):
    """A YAML mapping names a key twice (``key``; ``lines``: 1-based lines of both)."""

    def __init__(self, key: object, lines: tuple[int, int]) -> None:
        super().__init__(key, lines)
        self.key = key
        self.lines = lines


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last
    silently, so ``threshold: 0.5`` above ``threshold: 0.8`` would be ignored without a word).
    Keys brought in by a merge (``<<: *base``) may still be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, (seen[key], line))
                seen[key] = line
            except TypeError:  # unhashable: the base class reports it
                continue
        return super().construct_mapping(node, deep=deep)


class YamlInt(int):
    """An integer read from YAML that keeps the text it was written as (``text``): a text field
    such as a subject ID takes ``001`` as written, not ``str()`` of the number (``1``; YAML 1.1
    reads ``010`` as 8)."""

    text: str


class _IntTextLoader(_UniqueKeyLoader):
    """:class:`_UniqueKeyLoader` whose integers are :class:`YamlInt` (their written text kept)."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> YamlInt:
        out = YamlInt(super().construct_yaml_int(node))
        out.text = str(node.value)
        return out


_IntTextLoader.add_constructor("tag:yaml.org,2002:int", _IntTextLoader.construct_yaml_int)


def read_yaml_mapping(path: Path, int_text: bool = False) -> dict[str, Any]:
    """Parse a YAML file whose top level is a mapping (empty file -> {}); a key given twice in
    one mapping is a :class:`ConfigError`, as is any YAML the parser refuses. ``int_text``:
    integers are :class:`YamlInt`, so a text field (an ID) gets the digits as written."""
    path = Path(path)
    loader = _IntTextLoader if int_text else _UniqueKeyLoader  # both SafeLoaders
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {err.start}); save it as UTF-8") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({first_line(err)})") from err
    except _DuplicateKey as err:
        first, again = err.lines
        raise ConfigError(
            f"{path}: key {err.key!r} given twice (lines {first} and {again}); keep one"
        ) from None
    except ValueError as err:  # a value PyYAML cannot build: 2024-13-01, an int of 5,000 digits
        raise ConfigError(f"{path}: invalid YAML value ({first_line(err)})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data or {}


def load_config(path: Path | None) -> PipelineConfig:
    """Load and validate a YAML config; ``None`` gives the defaults. A file that exists is used
    as given; else a shipped one of that name (``configs/default.yaml`` from any directory)."""
    if path is None:
        return config_from_dict({}, "<defaults>")
    from ulcerseg.resources import find_config

    path = find_config(path)
    return config_from_dict(read_yaml_mapping(path), str(path))


def with_overrides(cfg: PipelineConfig, **section_values: dict[str, Any]) -> PipelineConfig:
    """Return ``cfg`` with some values replaced, e.g. ``segmentation={"model": "m"}``; None
    leaves a value as it is, a path (``Path``) is taken as its text."""
    data = cfg.to_dict()
    for section, values in section_values.items():
        if section not in data:
            raise ConfigError(f"<overrides>: unknown key {section!r} (allowed: {', '.join(sorted(data))})")
        if not isinstance(values, collections.abc.Mapping):
            got = type(values).__name__
            raise ConfigError(f"<overrides>: key {section!r}: expected a mapping, got {got}")
        data[section].update(
            {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in values.items() if v is not None}
        )
    return config_from_dict(data, "<overrides>")

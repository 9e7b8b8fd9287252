"""Photo decoding at the pipeline's edge: bytes, hash, EXIF orientation and date.

Original photos are only ever opened for reading.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from ulcerseg.errors import ImageAccessError, ImageReadError, one_line

log = logging.getLogger(__name__)

_EXIF_IFD = 0x8769
_TAG_DATETIME_ORIGINAL = 36867
_TAG_DATETIME = 306
_TAG_ORIENTATION = 0x0112
_TAG_NEW_SUBFILE_TYPE = 254  # TIFF: bit 0 set on a reduced-resolution version of another page


@dataclass(frozen=True)
class PhotoInfo:
    """What is known about a photo file before full decoding."""

    sha256: str
    width: int  # px, after EXIF orientation
    height: int  # px, after EXIF orientation
    mode: str  # Pillow mode of the stored image ("RGB", "L", ...)
    photo_date: str | None  # ISO 8601 date from EXIF, or None
    is_grayscale: bool
    # full-size images the file holds (TIFF pages other than reduced-resolution ones, HEIF's
    # top-level images, AVIF frames): only the first is measured, so more is a review flag
    n_images: int = 1


# HEIF (HEIC from phones) and AVIF are ISO base media files: "ftyp" at byte 4, then the brand
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
# formats OpenCV does not decode: decoded by Pillow (HEIF through the pi-heif plugin)
PILLOW_DECODED_FORMATS = frozenset({"HEIF", "AVIF"})
PHOTO_FORMATS = frozenset({"JPEG", "PNG", "TIFF", "MPO"}) | PILLOW_DECODED_FORMATS


@cache
def heif_available() -> bool:
    """Register the HEIF decoder with Pillow (once per process); False when pi-heif is missing.

    pi-heif is pillow-heif's decode-only build (libheif with libde265, no encoder)."""
    try:
        import pi_heif
    except ImportError:
        log.debug("pi-heif is not installed: HEIC/HEIF photos cannot be decoded")
        return False
    pi_heif.register_heif_opener()
    return True


def _iso_media_brand(data: bytes) -> bytes | None:
    """The major brand of an ISO base media file (``b"heic"``, ``b"avif"``...), else None."""
    return data[8:12] if len(data) >= 12 and data[4:8] == b"ftyp" else None


def decoded_by_pillow(data: bytes) -> bool:
    """True for ISO base media bytes (HEIF/HEIC, AVIF): OpenCV does not decode them, Pillow does.
    Such a photo is slow to decode and always decoded whole: a reduced :func:`decode_rgb` costs
    a full decode."""
    return _iso_media_brand(data) is not None


def _require_heif(path: Path, data: bytes) -> None:
    """A one-line ImageReadError for HEIF bytes when the HEIF decoder (pi-heif) is missing."""
    if not heif_available() and _iso_media_brand(data) in _HEIF_BRANDS:
        raise ImageReadError(f"{path}: HEIC/HEIF photo, but the HEIF decoder (pi-heif) is not installed")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of a byte string (the identity of a photo)."""
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: Path) -> bytes:
    """Read a file fully; raise ImageAccessError (retryable) naming the file on OS errors."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ImageAccessError(f"{path}: cannot read file ({err.strerror or err})") from err


def _exif_date(img: Image.Image) -> str | None:
    try:
        exif = img.getexif()
    except Exception:  # corrupt EXIF must not make a good photo unreadable
        return None
    raw = exif.get_ifd(_EXIF_IFD).get(_TAG_DATETIME_ORIGINAL) or exif.get(_TAG_DATETIME)
    if not raw:
        return None
    try:
        return datetime.strptime(str(raw).strip("\x00 "), "%Y:%m:%d %H:%M:%S").date().isoformat()
    except ValueError:
        log.debug("ignoring malformed EXIF date %r", raw)
        return None


@contextmanager
def _pillow_warnings_logged(path: str | Path) -> Iterator[None]:
    """Pillow's warnings inside (e.g. "Corrupt EXIF data": a damaged EXIF block only loses its
    tags) are logged with the file's name instead of reaching the terminal nameless."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                log.info("%s: %s", path, str(warning.message).strip())


def _stored_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) px as stored in the file, before EXIF orientation. Pillow reports a
    TIFF's size already rotated (and rotates it on load), a JPEG's as stored: the TIFF tags
    give the stored size whatever the Pillow version."""
    tags = getattr(img, "tag_v2", None)
    if img.format == "TIFF" and tags is not None:
        width, height = tags.get(256), tags.get(257)  # ImageWidth, ImageLength
        if isinstance(width, int) and isinstance(height, int):
            return width, height
    return img.size


def _orientation(img: Image.Image) -> object:
    """The orientation tag that OpenCV turns the decoded pixels by: the EXIF block's (a TIFF's
    own tag), 1 when absent. Pillow's ``getexif`` also reads XMP's ``tiff:Orientation`` and a
    PNG's "Raw profile type exif" text, which OpenCV ignores: with them the size reported was
    turned by 90° while the pixels decoded were not. HEIF carries its rotation and mirror in
    the container (``irot``/``imir``), which libheif applies and the size Pillow reports already
    includes: 1. Pillow's AVIF reader instead turns them into the EXIF orientation (pixels and
    size as stored), which :func:`decode_rgb` applies like OpenCV does a JPEG's."""
    if img.format == "HEIF":
        return 1
    img.getexif()  # loads a PNG's eXIf chunk, which may follow the pixels
    if "exif" in img.info:  # a JPEG's (MPO's) APP1 block, a PNG's eXIf chunk
        exif = Image.Exif()
        try:
            exif.load(img.info["exif"])
        except Exception:  # a damaged EXIF block (e.g. its TIFF header) only loses its tags
            return 1
        return exif.get(_TAG_ORIENTATION, 1)
    tags = getattr(img, "tag_v2", None)  # a TIFF's own tags
    return tags.get(_TAG_ORIENTATION, 1) if tags is not None else 1


def inspect_photo(path: Path, data: bytes) -> PhotoInfo:
    """Validate a photo's bytes and read its header (size, mode, EXIF date).

    Truncated JPEGs are caught here with a cheap reduced-size decode, because OpenCV silently
    fills a truncated image with grey.
    """
    if not data:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    _require_heif(path, data)
    try:
        with _pillow_warnings_logged(path):
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt, size, mode = img.format, _stored_size(img), img.mode
            orientation = _orientation(img)
            photo_date = _exif_date(img)
            if fmt == "JPEG" and not _ends_with_eoi(data):
                # no end-of-image marker: decode (cheaply, at 1/8 size) to tell truncation
                # from harmless trailing data
                img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                img.load()
            elif fmt not in PILLOW_DECODED_FORMATS | {"JPEG"}:
                img.load()  # a PNG or TIFF cut short: OpenCV may decode what is there silently
            n_images = _full_size_images(img)
    except UnidentifiedImageError as err:
        raise ImageReadError(f"{path}: not a readable image (unknown format)") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"{path}: image too large to decode safely ({one_line(err)})") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: corrupt or truncated image ({one_line(err)})") from err
    except MemoryError:
        raise
    except Exception as err:  # any other decoder failure is the bytes' fault, never a traceback
        raise ImageReadError(f"{path}: corrupt image ({type(err).__name__}: {one_line(err)})") from err
    if fmt not in PHOTO_FORMATS:
        raise ImageReadError(f"{path}: unsupported image format {fmt}")
    width, height = size
    if orientation in (5, 6, 7, 8):  # 90° rotations swap the axes
        width, height = height, width
    grayscale = mode in {"1", "L", "LA", "I", "I;16", "I;16B", "F", "P"} and not _palette_color(img)
    return PhotoInfo(sha256_bytes(data), width, height, mode, photo_date, grayscale, n_images)


# counted up to this many: a file of more pages is flagged all the same, and counting a crafted
# chain of thousands of TIFF directories would cost a read of each
_MAX_IMAGES_COUNTED = 16


def _full_size_images(img: Image.Image) -> int:
    """How many full-size images a photo file holds (at most :data:`_MAX_IMAGES_COUNTED`).

    A TIFF's pages marked reduced-resolution (NewSubfileType bit 0: the previews cameras and
    scanners write beside the photo) do not count; every other page is a photo of its own.
    HEIF's top-level images (a burst) and AVIF's frames count; a JPEG is one image (an MPO's
    second picture is a camera's preview or depth map, never another photo of the visit).
    """
    if img.format in ("JPEG", "MPO"):
        return 1
    count = 0
    try:
        n_frames = min(int(getattr(img, "n_frames", 1)), _MAX_IMAGES_COUNTED)
        if img.format != "TIFF" or n_frames == 1:
            return max(n_frames, 1)
        for index in range(n_frames):
            img.seek(index)
            if not int(img.getexif().get(_TAG_NEW_SUBFILE_TYPE, 0)) & 1:  # the page's own tags
                count += 1
        img.seek(0)
    except MemoryError:
        raise
    except Exception as err:  # Pillow's TIFF reader raises TypeError, ValueError, OSError...
        # the first page decoded, a later one cannot be read: the file holds more than the
        # photo measured, and what is not known goes to review (not a failed photo)
        log.info("a later image of the file cannot be read (%s: %s)", type(err).__name__, one_line(err))
        with suppress(Exception):
            img.seek(0)
        return max(count, 1) + 1
    return max(count, 1)


def _ends_with_eoi(data: bytes) -> bool:
    """True when JPEG bytes end with the EOI marker (FF D9), ignoring zero padding."""
    return data.rstrip(b"\x00").endswith(b"\xff\xd9")


@dataclass(frozen=True)
class Preview:
    """A downscaled copy of a photo, ``scale`` (<= 1) preview px per photo px.

    Pixel centres are aligned as OpenCV resizes them: preview px c is photo px
    (c + 0.5) / scale - 0.5, the map :func:`ulcerseg.geometry.reduced_to_photo` (1 / scale).
    """

    image: np.ndarray
    scale: float


def downscale(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` resized by ``factor`` (<= 1, both axes; the size rounded), every source px used.

    Halved by 2 x 2 averaging while more than halving is left (OpenCV's fast path for whole
    factors), then bilinear for the last factor between 1/2 and 1, which samples every source
    px: ~1/4 the cost of one fractional area resize (a 12 MP photo to 1600 px: ~10 ms instead of
    ~45 ms). Callers that map px back use the returned array's shape.
    """
    return _to_long_side(image, factor * max(image.shape[:2]))


def _to_long_side(image: np.ndarray, long_side: float) -> np.ndarray:
    small = image
    while long_side / max(small.shape[:2]) <= 0.5 and min(small.shape[:2]) >= 2:
        small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA)
    rest = long_side / max(small.shape[:2])
    if rest < 1.0:
        if min(small.shape[:2]) * rest < 0.5:  # a sliver (a grid that barely meets the photo): >= 1 px
            size = (max(1, round(small.shape[1] * rest)), max(1, round(small.shape[0] * rest)))
            return cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)
        small = cv2.resize(small, None, fx=rest, fy=rest, interpolation=cv2.INTER_LINEAR)
    return small


def make_preview(rgb: np.ndarray, max_side_px: int) -> Preview:
    """Downscaled copy of ``rgb`` whose longer side is at most ``max_side_px`` (as :func:`downscale`)."""
    if max_side_px >= max(rgb.shape[:2]):
        return Preview(rgb, 1.0)
    small = _to_long_side(rgb, max_side_px)
    # the exact ratio of the rounded size, so preview px map back to photo px precisely
    return Preview(small, small.shape[1] / rgb.shape[1])


def _palette_color(img: Image.Image) -> bool:
    if img.mode != "P":
        return False
    palette = img.getpalette() or []
    rgb = np.asarray(palette, dtype=np.int16).reshape(-1, 3)
    return bool(np.any(rgb[:, 0] != rgb[:, 1]) or np.any(rgb[:, 1] != rgb[:, 2]))


REDUCTIONS = (1, 2, 4, 8)  # decode sizes that JPEG's DCT scaling gives almost for free
_REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
# OpenCV >= 4.10 decodes straight to RGB (libjpeg-turbo's own colour order): ~8 ms less per
# 12-MP photo decoded at 1/2, ~30 ms at full size, than decoding to BGR and swapping
_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


def decode_rgb(path: Path, data: bytes, reduction: int = 1) -> np.ndarray:
    """Decode photo bytes to an RGB uint8 array (H x W x 3), EXIF orientation applied.

    ``reduction`` 2, 4 or 8 decodes at 1/2, 1/4 or 1/8 of the size (each px the mean of an
    r x r block of photo px; JPEG scales in the DCT domain, which costs a fraction of a
    full decode). :func:`ulcerseg.geometry.reduced_to_photo` maps its px to photo px.
    """
    if reduction not in _REDUCED_FLAGS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction}")
    if decoded_by_pillow(data):
        return _reduce(path, _decode_with_pillow(path, data), reduction)
    buf = np.frombuffer(data, dtype=np.uint8)
    if reduction > 1 and data[:4] in _TIFF_SIGNATURES:
        # OpenCV's reduced TIFF decode resizes to the stored size / r after its TIFF reader has
        # turned the image upright: orientations 5-8 came out squashed to the stored aspect.
        # The same resize on the upright full decode (identical pixels for orientations 1-4)
        full = decode_rgb(path, data)
        size = (max(1, full.shape[1] // reduction), max(1, full.shape[0] // reduction))
        return cv2.resize(full, size, interpolation=cv2.INTER_LINEAR_EXACT)
    if data[:2] == b"\xff\xd8":
        checked = _decode_jpeg_checked(path, data, reduction)
        if checked is not None:
            return checked
    flags = _REDUCED_FLAGS[reduction]
    if _IMREAD_RGB is not None:  # the decoder writes RGB itself: the same pixels, no extra pass
        flags = (flags & ~cv2.IMREAD_COLOR) | _IMREAD_RGB
    try:
        image = cv2.imdecode(buf, flags)  # applies EXIF orientation
    except cv2.error as err:
        raise ImageReadError(
            f"{path}: image could not be decoded ({str(err).strip().splitlines()[-1]})"
        ) from err
    if image is None:
        raise ImageReadError(f"{path}: image could not be decoded")
    if data[:2] == b"\xff\xd8" and _blank_grey_edge(image):
        raise ImageReadError(f"{path}: corrupt or truncated image (the JPEG data ends early: "
                             "its last rows decode as blank grey)")  # fmt: skip
    return image if _IMREAD_RGB is not None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


_HARMLESS_JPEG_WARNINGS = ("extraneous bytes before marker",)
"""libjpeg warnings that lose no image data (bytes between segments, which some cameras write)."""


def _decode_jpeg_checked(path: Path, data: bytes, reduction: int) -> np.ndarray | None:
    """A YCbCr or grey JPEG decoded by libjpeg-turbo (simplejpeg), refusing damaged data.

    libjpeg only warns about entropy-coded data that is damaged (a bad Huffman code, a segment
    ended early, a missing restart marker), and fills what it could not decode with guesses:
    OpenCV and Pillow then return an image of the damage (a shifted marker, a smeared ulcer)
    without a word. Here a warning is an :class:`ImageReadError`, except the harmless kinds
    (:data:`_HARMLESS_JPEG_WARNINGS`). The pixels, reduced decodes included, are OpenCV's (the
    same libjpeg-turbo decode), the EXIF orientation applied as OpenCV applies it. None: not a
    JPEG this decoder takes (CMYK, 12-bit, a header it cannot read) or one with a harmless
    warning: the caller decodes it with OpenCV.
    """
    try:
        height, width, colorspace, _subsampling = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "Gray") or min(height, width) < 1:
        return None
    size = {"min_height": -(-height // reduction), "min_width": -(-width // reduction)}
    try:
        image = simplejpeg.decode_jpeg(data, "RGB", **size, strict=True)
    except ValueError as err:
        message = one_line(err)
        if any(kind in message for kind in _HARMLESS_JPEG_WARNINGS):
            return None  # OpenCV decodes it as if the stray bytes were not there
        raise ImageReadError(f"{path}: corrupt or truncated image ({message})") from None
    return _exif_oriented(image, _jpeg_orientation(data))


def _jpeg_orientation(data: bytes) -> object:
    """The EXIF orientation OpenCV applies to these JPEG bytes (1 when unreadable)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                return _orientation(img)
    except Exception:  # a header Pillow cannot parse has no orientation it could give
        return 1


def _exif_oriented(image: np.ndarray, orientation: object) -> np.ndarray:
    """``image`` turned upright by an EXIF orientation, exactly as ``cv2.imdecode`` does (other
    values than 2-8 leave it as stored)."""
    if orientation in (5, 6, 7, 8):
        image = cv2.transpose(image)
    flip = _EXIF_FLIPS.get(orientation) if isinstance(orientation, int) else None
    return np.ascontiguousarray(cv2.flip(image, flip) if flip is not None else image)


_EXIF_FLIPS = {2: 1, 3: -1, 4: 0, 6: 1, 7: -1, 8: 0}  # cv2.flip codes after the transpose of 5-8


def _decode_with_pillow(path: Path, data: bytes) -> np.ndarray:
    """HEIF/HEIC or AVIF bytes -> RGB uint8, upright (the container's rotation applied);
    10-bit HEIF is reduced to 8 bits, alpha dropped."""
    _require_heif(path, data)
    try:
        with _pillow_warnings_logged(path), Image.open(io.BytesIO(data)) as img:
            if img.format not in PILLOW_DECODED_FORMATS:
                raise ImageReadError(f"{path}: image could not be decoded (not HEIF or AVIF inside)")
            # AVIF: turned upright by its EXIF orientation (see _orientation); HEIF already is
            upright = ImageOps.exif_transpose(img) if img.format == "AVIF" else img
            return np.ascontiguousarray(np.asarray(upright.convert("RGB")))
    except ImageReadError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # any decoder failure is the bytes' fault, never a traceback
        detail = f"{type(err).__name__}: {one_line(err)}"
        raise ImageReadError(f"{path}: image could not be decoded ({detail})") from err


def _reduce(path: Path, image: np.ndarray, reduction: int) -> np.ndarray:
    """``image`` at 1/``reduction`` size, each px the mean of an r x r block of photo px (what a
    JPEG's DCT-scaled decode gives; the map :func:`ulcerseg.geometry.reduced_to_photo`). A last
    partial row or column of blocks is left out."""
    if reduction == 1:
        return image
    h, w = image.shape[0] // reduction, image.shape[1] // reduction
    if min(h, w) < 1:
        raise ImageReadError(f"{path}: image of {image.shape[1]} x {image.shape[0]} px too small to reduce")
    blocks = image[: h * reduction, : w * reduction]
    return cv2.resize(blocks, (w, h), interpolation=cv2.INTER_AREA)


def _blank_grey_edge(image: np.ndarray) -> bool:
    """True when a whole edge row or column of a decoded JPEG is exactly (128, 128, 128): what
    libjpeg fills the blocks with that a baseline JPEG's data lacks (cut short, then ended by
    an end-of-image marker), with a nameless warning only. No photo's sensor noise leaves a
    full edge of one exact grey; the edge depends on the EXIF orientation, hence all four."""
    if min(image.shape[:2]) < 8:
        return False
    return any(bool(np.all(edge == 128)) for edge in (image[0], image[-1], image[:, 0], image[:, -1]))


def write_png(path: Path, image: np.ndarray, compression: int = 3, fast: bool = False) -> None:
    """Write an RGB (H x W x 3) or single-channel uint8 array as PNG (no metadata).

    ``compression`` 0-9. ``fast``: level 1 with the "sub" row filter and run-length matching,
    ~2.4x faster than level 1 with adaptive filters and no larger on photos (for overlays and
    rectified crops; lossless all the same).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    params = [cv2.IMWRITE_PNG_COMPRESSION, compression]
    if fast:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
        if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11
            params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
    ok, enc = cv2.imencode(".png", arr, params)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_bytes(enc.tobytes())
        tmp.replace(path)  # atomic: a killed run never leaves a half-written file
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. disk full: no partial file left behind
        raise


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H x W x 3), EXIF orientation applied (photo frame).

    Grey images are expanded to three channels, alpha is dropped. Raises ImageReadError.
    """
    data = read_bytes(Path(path))
    if not data:
        raise ImageReadError(f"{path}: cannot decode image (empty file)")
    return decode_rgb(Path(path), data)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a binary mask image as bool (H x W); True = ulcer. Raises ImageReadError.

    Accepted: 0/255, 0/1, 0/65535 (16-bit) or 1-bit images, grey or with identical colour
    channels (alpha ignored); a palette image by its colours. The file is read as stored (no
    EXIF rotation: masks carry none).
    """
    try:
        with Image.open(path) as im:
            # a palette image's pixels are indices into its palette: the colours are the mask
            # (index 1 may be black, index 0 white), so the one binary rule applies to them
            arr = np.asarray(im.convert("RGBA") if im.mode in ("P", "PA") else im)
    except Exception as err:  # PIL raises many types
        raise ImageReadError(f"{path}: cannot read mask image ({one_line(err)})") from None
    if arr.ndim == 3:
        channels = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]
        if not np.all(channels == channels[..., :1]):
            raise ImageReadError(f"{path}: mask must be single-channel (got colour image)")
        if arr.shape[2] in (2, 4) and np.ptp(channels) == 0 and np.ptp(arr[..., -1]) > 0:
            # one colour everywhere and the shape only in alpha: read as colour it would be
            # empty (0 mm², "healed") or the whole photo
            raise ImageReadError(f"{path}: mask is drawn in the alpha channel only; save it as 0/255 grey")
        arr = channels[..., 0]
    if arr.ndim != 2:
        raise ImageReadError(f"{path}: mask must be a 2-D image, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    top = np.iinfo(arr.dtype).max if arr.dtype.kind in "ui" else None
    allowed = ({0, 1}, {0, 255}, {0, top} if top is not None else {0, 1})
    values = np.unique(arr)
    vals = {int(v) if float(v).is_integer() else float(v) for v in values.tolist()}
    if not any(vals <= a for a in allowed):
        shown = ", ".join(str(v) for v in sorted(vals)[:6])
        raise ImageReadError(
            f"{path}: mask is not binary (values {shown}{', ...' if len(vals) > 6 else ''}); "
            "expected 0/255 or 0/1"
        )
    return arr > 0


def exif_orientation(path: str | Path) -> int:
    """EXIF orientation tag (1 = upright, 1-8) from the file header; 1 when absent."""
    heif_available()
    try:
        with _pillow_warnings_logged(path), Image.open(path) as im:
            return int(_orientation(im))  # type: ignore[call-overload]
    except Exception as err:  # PIL raises many types
        raise ImageReadError(f"{path}: cannot read image header ({one_line(err)})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) px in the photo frame (after EXIF orientation), from the header only."""
    heif_available()
    try:
        with _pillow_warnings_logged(path), Image.open(path) as im:
            w, h = _stored_size(im)
            orientation = _orientation(im)
    except Exception as err:  # PIL raises many types
        raise ImageReadError(f"{path}: cannot read image header ({one_line(err)})") from None
    # orientations 5-8 swap the axes; OpenCV applies them when decoding
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ulcerseg.errors import ImageReadError
from ulcerseg.imageio import decode_rgb, inspect_photo


def _jpeg_with_exif(orientation: int, date: str | None) -> bytes:
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :50] = 255  # left quarter white
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = orientation
    if date:
        exif.get_ifd(0x8769)[36867] = date
    buf = io.BytesIO()
    pil.save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


def test_exif_orientation_and_date_are_honoured() -> None:
    data = _jpeg_with_exif(6, "2026:03:04 09:15:00")  # 6 = rotate 90° clockwise
    info = inspect_photo(Path("p.jpg"), data)
    assert (info.width, info.height) == (100, 200)
    assert info.photo_date == "2026-03-04"
    rgb = decode_rgb(Path("p.jpg"), data)
    assert rgb.shape == (200, 100, 3)
    assert rgb[:40, :, 0].mean() > 200  # the white quarter is now on top
    assert rgb[-40:, :, 0].mean() < 50


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is a text file, not a photo\n" * 10, "not a readable image"),
    ],
)
def test_bad_bytes_are_rejected_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageReadError, match=reason) as info:
        inspect_photo(Path("S1/D0/x.jpg"), data)
    assert "S1/D0/x.jpg" in str(info.value)


def test_truncated_jpeg_is_detected() -> None:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    with pytest.raises(ImageReadError, match="truncated"):
        inspect_photo(Path("t.jpg"), data[: len(data) // 2])


def test_grayscale_png_is_reported() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(buf, "PNG")
    assert inspect_photo(Path("g.png"), buf.getvalue()).is_grayscale
    buf = io.BytesIO()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(buf, "PNG")
    assert not inspect_photo(Path("c.png"), buf.getvalue()).is_grayscale


def test_read_rgb_applies_exif_and_image_size_reads_only_the_header(tmp_path: Path) -> None:
    from ulcerseg.imageio import exif_orientation, image_size, read_rgb

    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg_with_exif(6, None))
    assert image_size(path) == (100, 200) and exif_orientation(path) == 6
    rgb = read_rgb(path)
    assert rgb.shape == (200, 100, 3) and rgb.dtype == np.uint8
    assert rgb[:40, :, 0].mean() > 200
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((5, 7), 9, np.uint8)).save(grey)
    assert read_rgb(grey).shape == (5, 7, 3)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png"):
        read_rgb(tmp_path / "empty.png")


def test_read_mask_accepts_binary_encodings_and_rejects_grey_and_colour(tmp_path: Path) -> None:
    from ulcerseg.imageio import read_mask

    truth = np.zeros((6, 8), bool)
    truth[1:4, 2:7] = True
    encodings = {
        "u8_255.png": Image.fromarray(truth.astype(np.uint8) * 255),
        "u8_1.png": Image.fromarray(truth.astype(np.uint8)),
        "u16.png": Image.fromarray(truth.astype(np.uint16) * 65535),
        "bit.png": Image.fromarray(truth),
        "rgb.png": Image.fromarray(np.repeat(truth[..., None].astype(np.uint8) * 255, 3, axis=2)),
    }
    for name, im in encodings.items():
        im.save(tmp_path / name)
        assert np.array_equal(read_mask(tmp_path / name), truth), name
    Image.fromarray(np.full((4, 4), 128, np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(ImageReadError, match=r"grey\.png: mask is not binary \(values 128\)"):
        read_mask(tmp_path / "grey.png")
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(ImageReadError, match="single-channel"):
        read_mask(tmp_path / "colour.png")


def test_read_mask_reads_a_palette_image_by_its_colours(tmp_path: Path) -> None:
    """A palette PNG was read as palette indices: white at index 0 and black at index 1
    made an inverted mask, and black 0 / white 5 was "not binary". The colours are the mask."""
    from ulcerseg.imageio import read_mask

    truth = np.zeros((6, 8), bool)
    truth[1:4, 2:7] = True
    for name, white, black in (("inverted.png", 0, 1), ("sparse.png", 5, 0)):
        im = Image.fromarray(np.where(truth, white, black).astype(np.uint8), mode="P")
        palette = [90, 90, 90] * 256  # unused entries grey: only the used colours count
        palette[3 * white : 3 * white + 3], palette[3 * black : 3 * black + 3] = [255] * 3, [0] * 3
        im.putpalette(palette)
        im.save(tmp_path / name)
        assert np.array_equal(read_mask(tmp_path / name), truth), name
        im.save(tmp_path / f"t_{name}", transparency=black)  # a tRNS chunk: alpha ignored
        assert np.array_equal(read_mask(tmp_path / f"t_{name}"), truth), f"t_{name}"
    red = Image.fromarray(truth.astype(np.uint8), mode="P")
    red.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    red.save(tmp_path / "red.png")
    with pytest.raises(ImageReadError, match=r"red\.png: mask must be single-channel"):
        read_mask(tmp_path / "red.png")


def test_read_mask_refuses_a_mask_drawn_in_alpha_only(tmp_path: Path) -> None:
    """An RGBA mask, black everywhere with the ulcer only in alpha, was read as empty: 0 mm²,
    a healed ulcer. Alpha is still ignored where the colours hold the mask."""
    from ulcerseg.imageio import read_mask

    truth = np.zeros((6, 8), bool)
    truth[1:4, 2:7] = True
    alpha_only = np.zeros((6, 8, 4), np.uint8)
    alpha_only[..., 3] = truth * 255
    Image.fromarray(alpha_only).save(tmp_path / "alpha.png")
    with pytest.raises(ImageReadError, match=r"alpha\.png: mask is drawn in the alpha channel only"):
        read_mask(tmp_path / "alpha.png")
    both = np.repeat(truth[..., None].astype(np.uint8) * 255, 4, axis=2)  # white ulcer, opaque
    Image.fromarray(both).save(tmp_path / "both.png")
    assert np.array_equal(read_mask(tmp_path / "both.png"), truth)
    Image.fromarray(np.zeros((6, 8, 4), np.uint8)).save(tmp_path / "empty.png")
    assert not read_mask(tmp_path / "empty.png").any()  # uniform alpha: an empty mask


def test_reduced_decode_keeps_exif_orientation_and_block_means() -> None:
    from ulcerseg.geometry import apply_homography, reduced_to_photo

    rgb = np.zeros((400, 600, 3), np.uint8)
    rgb[:100, :200] = 255  # a white block in the stored image's top-left corner
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=95)
    full = decode_rgb(Path("p.jpg"), buf.getvalue())
    half = decode_rgb(Path("p.jpg"), buf.getvalue(), 2)
    assert full.shape == (600, 400, 3) and half.shape == (300, 200, 3)
    assert half[:80, -40:].mean() > 250 and full[:180, -90:].mean() > 250  # block now top-right
    assert np.abs(half.astype(int) - full[::2, ::2].astype(int)).mean() < 6
    # reduced px (i, j) is the mean of photo px (2i..2i+1, 2j..2j+1): centre 2i + 0.5
    assert apply_homography(reduced_to_photo(2), np.array([[0.0, 0.0], [10.0, 3.0]])).tolist() == [
        [0.5, 0.5],
        [20.5, 6.5],
    ]
    with pytest.raises(ValueError, match="reduction"):
        decode_rgb(Path("p.jpg"), buf.getvalue(), 3)


def test_downscale_averages_away_detail_finer_than_its_output_and_keeps_the_mean() -> None:
    from ulcerseg.imageio import downscale

    # a 1-px checkerboard: any resampling that skips source px turns it into a pattern
    checker = ((np.indices((400, 600)).sum(axis=0) % 2) * 255).astype(np.uint8)
    small = downscale(np.dstack([checker] * 3), 0.25)
    assert small.shape == (100, 150, 3)
    assert small.std() < 1.0 and abs(small.mean() - 127.5) < 1.0
    # a fractional factor: the size is rounded, the mean level kept
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (301, 457, 3), dtype=np.uint8), (0, 0), 4)
    out = downscale(smooth, 0.37)
    assert out.shape == (round(301 * 0.37), round(457 * 0.37), 3)
    assert abs(float(out.mean()) - float(smooth.mean())) < 1.0
    assert downscale(smooth, 1.0) is smooth
    # a sliver keeps at least one px a side (a zero-size resize would raise)
    assert downscale(np.zeros((1, 50, 3), np.uint8), 0.1).shape == (1, 5, 3)
    assert downscale(np.zeros((3, 400, 3), np.uint8), 0.05).shape == (1, 20, 3)


def _encoded(image: np.ndarray, ext: str) -> bytes:
    ok, enc = cv2.imencode(ext, image)
    assert ok
    return enc.tobytes()


@pytest.mark.parametrize("reduction", [1, 2])
def test_decode_gives_rgb_in_display_orientation_for_every_format(reduction: int) -> None:
    """Channel order and orientation whichever way OpenCV decodes (straight to RGB where it
    can): the same pixels as decoding to BGR and swapping, for colour, grey, alpha and 16 bits."""
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[:, :48] = (220, 30, 30)  # red left half
    rgb[:, 48:] = (30, 30, 220)  # blue right half
    pil = Image.fromarray(rgb)
    exif = pil.getexif()
    exif[0x0112] = 6  # display rotated 90° clockwise: red on top
    buf = io.BytesIO()
    pil.save(buf, "JPEG", exif=exif, quality=95)
    out = decode_rgb(Path("p.jpg"), buf.getvalue(), reduction)
    top, bottom = out[: out.shape[0] // 3].mean(axis=(0, 1)), out[-out.shape[0] // 3 :].mean(axis=(0, 1))
    assert top[0] > 180 and top[2] < 70 and bottom[2] > 180 and bottom[0] < 70
    bgra = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 128, np.uint8)])
    grey16 = (np.arange(64 * 96, dtype=np.uint16).reshape(64, 96) * 10).astype(np.uint16)
    for data in (
        buf.getvalue(),
        _encoded(bgra, ".png"),
        _encoded(grey16, ".png"),
        _encoded(rgb[..., 0], ".png"),
    ):
        flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2}[reduction]
        reference = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), flag), cv2.COLOR_BGR2RGB)
        decoded = decode_rgb(Path("p"), data, reduction)
        assert decoded.dtype == np.uint8 and decoded.shape == reference.shape
        assert np.array_equal(decoded, reference)


def test_corrupt_exif_is_logged_with_the_file_name_not_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pillow warns nameless about a damaged EXIF block; the photo is still read (without the
    EXIF tags) and the message is logged with the file's name instead."""
    import struct
    import warnings

    from ulcerseg.imageio import exif_orientation, image_size

    buf = io.BytesIO()
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    payload = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8)  # IFD0 lies past the block's end
    data = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
    with warnings.catch_warnings(record=True) as leaked, caplog.at_level("INFO", logger="ulcerseg.imageio"):
        warnings.simplefilter("always")
        info = inspect_photo(Path("S1/D0/U1.jpg"), data)
    assert (info.width, info.height, info.photo_date) == (60, 40, None)
    assert not leaked
    assert any("S1/D0/U1.jpg: Corrupt EXIF data" in r.getMessage() for r in caplog.records)
    path = tmp_path / "U2.jpg"  # the header readers too (annotation import, QA)
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        assert image_size(path) == (60, 40) and exif_orientation(path) == 1
    assert not leaked


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_tiff_size_is_the_decoded_size_whatever_its_orientation(tmp_path: Path, orientation: int) -> None:
    from ulcerseg.imageio import image_size, inspect_photo, read_rgb

    path = tmp_path / "p.tif"
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(path, tiffinfo={274: orientation})
    height, width = read_rgb(path).shape[:2]
    assert (height, width) == ((80, 60) if orientation in (6, 8) else (60, 80))
    info = inspect_photo(path, path.read_bytes())
    # was (80, 60) for 6 and 8: Pillow reports a TIFF's size already rotated, and it was swapped again
    assert image_size(path) == (info.width, info.height) == (width, height)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_reduced_tiff_decode_is_upright_and_unsquashed(orientation: int) -> None:
    """OpenCV's reduced TIFF decode resized the upright image to the stored size / r: a TIFF
    turned by 90° (orientation 5-8) came out squashed to the stored aspect (measured 2% off)."""
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[:30, :40] = 255  # white top-left quarter
    stored = {1: rgb, 3: np.rot90(rgb, 2), 6: np.rot90(rgb, 1), 8: np.rot90(rgb, -1)}[orientation]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(stored)).save(buf, "TIFF", tiffinfo={274: orientation})
    assert decode_rgb(Path("p.tif"), buf.getvalue()).shape == (60, 80, 3)
    for reduction in (2, 4):
        out = decode_rgb(Path("p.tif"), buf.getvalue(), reduction)
        assert out.shape == (60 // reduction, 80 // reduction, 3)
        h, w = out.shape[:2]
        assert out[: h // 2 - 1, : w // 2 - 1].min() > 200 and out[h // 2 + 1 :, :].max() < 50


def test_size_and_orientation_follow_the_exif_block_that_the_decoder_turns_by(tmp_path: Path) -> None:
    """Pillow also reads XMP's tiff:Orientation and a PNG's "Raw profile type exif" text;
    OpenCV turns the pixels by the EXIF block only, so the size reported (image_width_px,
    image_height_px, search coverage) was turned by 90° while the photo measured was not."""
    import struct

    from PIL import PngImagePlugin

    from ulcerseg.imageio import exif_orientation, image_size

    rgb = np.zeros((40, 60, 3), np.uint8)
    xmp = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG")
    payload = b"http://ns.adobe.com/xap/1.0/\x00" + xmp.encode()
    jpeg = buf.getvalue()
    jpeg = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
    exif = Image.Exif()
    exif[0x0112] = 6
    raw = exif.tobytes()
    text = PngImagePlugin.PngInfo()
    text.add_text("Raw profile type exif", f"\nexif\n{len(raw):8d}\n{raw.hex()}\n")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", pnginfo=text)
    for name, data in (("x.jpg", jpeg), ("x.png", buf.getvalue())):
        assert decode_rgb(Path(name), data).shape == (40, 60, 3)  # not turned
        info = inspect_photo(Path(name), data)
        assert (info.width, info.height) == (60, 40), name
        path = tmp_path / name
        path.write_bytes(data)
        assert image_size(path) == (60, 40) and exif_orientation(path) == 1, name
    damaged = jpeg[:2] + b"\xff\xe1\x00\x10Exif\x00\x00XX*\x00\x08\x00\x00\x00" + jpeg[2:]  # no TIFF header
    assert inspect_photo(Path("x.jpg"), damaged).width == 60


def test_jpeg_cut_short_but_ended_by_an_eoi_marker_is_refused_not_measured_grey() -> None:
    """Cut short then closed by FF D9, a baseline JPEG passed the end-of-image check, and
    libjpeg filled its missing rows with blank grey (a nameless warning): the photo was measured
    with part of it blank (an ulcer there measured smaller or not at all)."""
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (128, 192, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    assert decode_rgb(Path("p.jpg"), data).shape == (128, 192, 3)
    cut = data[: len(data) * 2 // 3] + b"\xff\xd9"
    inspect_photo(Path("p.jpg"), cut)  # the header and the end marker look fine
    for reduction in (1, 2, 8):
        with pytest.raises(ImageReadError, match=r"p\.jpg: corrupt or truncated"):
            decode_rgb(Path("p.jpg"), cut, reduction)


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_every_quarter_turn_orientation_swaps_the_reported_size_as_the_decoder_does(
    tmp_path: Path, orientation: int
) -> None:
    """5 (transpose) and 7 (transverse) turn by 90° too: the size is the decoded frame's."""
    from ulcerseg.imageio import image_size

    data = _jpeg_with_exif(orientation, None)  # stored 200 x 100 px
    expected = (100, 200) if orientation >= 5 else (200, 100)
    info = inspect_photo(Path("p.jpg"), data)
    assert (info.width, info.height) == expected
    path = tmp_path / "p.jpg"
    path.write_bytes(data)
    assert image_size(path) == expected
    assert decode_rgb(path, data).shape[1::-1] == expected


@pytest.mark.parametrize("edge", ["top", "bottom", "left", "right"])
def test_a_blank_grey_edge_on_any_side_marks_a_truncated_jpeg(edge: str) -> None:
    """Which edge a cut-short JPEG leaves grey depends on its EXIF orientation: all four count."""
    from ulcerseg.imageio import _blank_grey_edge

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert not _blank_grey_edge(image)
    where = {"top": np.s_[0], "bottom": np.s_[-1], "left": np.s_[:, 0], "right": np.s_[:, -1]}[edge]
    image[where] = 128
    assert _blank_grey_edge(image)


def test_a_photo_too_large_to_decode_safely_is_refused_from_its_header() -> None:
    """Pillow's decompression-bomb warning (over ~89 M px) refuses the file as too large, before
    any pixel is decoded; a header of 10000 x 10000 px is enough."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 10000, 10000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageReadError, match="too large to decode safely"):
        inspect_photo(Path("huge.png"), data)


def test_a_failed_png_write_keeps_the_previous_file_whole(tmp_path: Path, monkeypatch) -> None:
    """write_png writes a temporary file and renames it: a disk filling up mid-write leaves the
    earlier mask as it was, and no temporary file."""
    from ulcerseg.imageio import write_png

    path = tmp_path / "masks" / "m.png"
    write_png(path, np.full((20, 30), 255, np.uint8))
    before = path.read_bytes()
    real = Path.write_bytes

    def disk_full(self: Path, data: bytes) -> int:
        real(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_png(path, np.zeros((20, 30), np.uint8))
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.png"]


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpeg_decode_is_opencvs_for_every_orientation_and_reduction(mode: str) -> None:
    """JPEGs are decoded by simplejpeg (which refuses damaged data) since 0.3.3: the pixels,
    the EXIF orientation (valid, absent and invalid values) and the reduced sizes must be
    exactly what ``cv2.imdecode`` gave, so that no measured area moves."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (75, 101, 3)).astype(np.uint8), (0, 0), 2)
    reduced = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
               8: cv2.IMREAD_REDUCED_COLOR_8}  # fmt: skip
    for orientation in (None, 1, 2, 3, 4, 5, 6, 7, 8, 9, 255):
        exif = Image.Exif()
        if orientation is not None:
            exif[0x0112] = orientation
        buf = io.BytesIO()
        Image.fromarray(base if mode == "RGB" else base[..., 0]).save(buf, "JPEG", exif=exif.tobytes())
        data = buf.getvalue()
        for reduction, flag in reduced.items():
            got = decode_rgb(Path("x.jpg"), data, reduction)
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
            want = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB if bgr.ndim == 3 else cv2.COLOR_GRAY2RGB)
            assert got.shape == want.shape and np.array_equal(got, want), (orientation, reduction)


def test_inspect_photo_counts_the_full_size_images_of_a_file(tmp_path: Path) -> None:
    """Only a file's first image is measured: more full-size images (an AVIF sequence, a TIFF of
    two photos) are counted so that the photo gets ``several_images``; a TIFF's reduced-resolution
    preview page and a later page that cannot be read are told apart from a clean single photo."""
    import io

    from PIL import Image

    from ulcerseg.imageio import inspect_photo

    frames = [Image.fromarray(np.full((32, 48, 3), v, np.uint8)) for v in (60, 160)]
    buf = io.BytesIO()
    frames[0].save(buf, "AVIF", save_all=True, append_images=frames[1:], quality=90)
    assert inspect_photo(tmp_path / "a.avif", buf.getvalue()).n_images == 2
    buf = io.BytesIO()
    frames[0].save(buf, "AVIF", quality=90)
    assert inspect_photo(tmp_path / "b.avif", buf.getvalue()).n_images == 1
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    two = buf.getvalue()
    assert inspect_photo(tmp_path / "c.tif", two).n_images == 2
    # the second page's directory damaged: the first page is still measured, and flagged
    second_ifd = int.from_bytes(two[4:8], "little")  # first IFD; its last 4 bytes link the next
    n_tags = int.from_bytes(two[second_ifd : second_ifd + 2], "little")
    link = second_ifd + 2 + 12 * n_tags
    damaged = two[:link] + (len(two) + 4096).to_bytes(4, "little") + two[link + 4 :]
    info = inspect_photo(tmp_path / "d.tif", damaged)
    assert info.n_images == 2 and (info.width, info.height) == (48, 32)
    from fault_corpus import tiff_pages

    photo = np.full((64, 96, 3), 120, np.uint8)
    preview = np.ascontiguousarray(photo[::4, ::4])
    assert inspect_photo(tmp_path / "e.tif", tiff_pages((photo, 0), (preview, 1))).n_images == 1
    assert inspect_photo(tmp_path / "f.tif", tiff_pages((photo, 0), (preview, 0))).n_images == 2


def test_an_mpo_file_is_one_photo(tmp_path: Path) -> None:
    """Guards MPO beside JPEG in ``_full_size_images``: a camera's MPO (a JPEG followed by its
    preview or depth picture, which Pillow reads as two frames) is one photo of the visit, never
    ``several_images``."""
    import io

    from PIL import Image

    from ulcerseg.imageio import inspect_photo

    frames = [Image.fromarray(np.full((32, 48, 3), v, np.uint8)) for v in (60, 160)]
    buf = io.BytesIO()
    frames[0].save(buf, "MPO", save_all=True, append_images=frames[1:])
    data = buf.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    assert inspect_photo(tmp_path / "a.jpg", data).n_images == 1

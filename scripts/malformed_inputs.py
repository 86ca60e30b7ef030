"""Malformed, unusual and hostile upload files for the Space reliability test (scripts/reliability_space.py).

`write_cases(folder, count)` writes at least `count` files, deterministic for a seed: truncated PNG/JPEG/DICOM,
zero-byte files, text and HTML renamed to image extensions, decompression bombs (PNGs whose header promises up to
50000x50000 pixels, fully encoded yet only kilobytes to megabytes on disk), 16-bit and 32-bit/float images, CMYK
JPEG, RGBA/LA/palette/1-bit PNG, animated and single-frame GIF, huge (8000x8000) and tiny (1x1) images, extreme
aspect ratios, DICOM without pixel data / with a wrong pixel length / zero rows / unsupported compression / only a
preamble, malformed DICOM attributes (`malformed_dicom_cases`: every attribute the reader uses missing, empty,
non-numeric, out of range or inconsistent; broken VOI/Modality LUTs and palettes; huge declared sizes; a deflate
bomb), random bytes under many extensions, valid files under the wrong extension, corrupted bytes inside valid
files, and real radiographs (the bundled sample) in unusual valid encodings (16/12-bit, CMYK, alpha, palette,
animated GIF, float TIFF with NaN/inf, BMP, WebP, letterboxed, 1x1, 8000x8000, MONOCHROME1 and RGB DICOM), which
reach the model. Each case has a name (its kind) and the file; every kind appears in several sizes/seeds.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    kind: str
    path: Path


def write_cases(folder: str | Path, count: int = 200, seed: int = 0) -> list[Case]:
    """Write >= `count` malformed/unusual inputs into `folder` (cycling generators over sizes and seeds)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    round_index = 0
    while len(cases) < count:
        for kind, make in GENERATORS:
            rng = np.random.default_rng([seed, round_index, len(cases)])
            for suffix, data in make(rng, round_index):
                path = folder / f"{len(cases):04d}_{kind}{suffix}"
                path.write_bytes(data)
                cases.append(Case(kind, path))
        round_index += 1
    return cases


def valid_radiograph_png() -> bytes:
    """A real radiograph (the first bundled sample) as PNG: the request that must still work after the malformed ones.

    Not a synthetic picture: the input check's gate refuses drawings of lungs, as it should.
    """
    first = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[0]
    return encode_image(Image.open(first).convert("L"), "PNG")


# --- generators: (rng, round) -> [(suffix, bytes), ...] ------------------------------------------------------------


def _noise(rng: np.random.Generator, shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
    high = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, int(high) + 1, size=shape, dtype=np.int64).astype(dtype)
    return rng.random(shape).astype(dtype)


def encode_image(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def truncated_png(rng, r):
    data = encode_image(Image.fromarray(_noise(rng, (128 + 32 * r, 128))), "PNG")
    return [(".png", data[: max(1, int(len(data) * f))]) for f in (0.02, 0.3, 0.7, 0.98)]


def truncated_jpeg(rng, r):
    data = encode_image(Image.fromarray(_noise(rng, (160 + 16 * r, 160, 3))), "JPEG", quality=90)
    return [(".jpg", data[: max(1, int(len(data) * f))]) for f in (0.01, 0.25, 0.6, 0.95)]


def zero_byte(rng, r):
    return [(suffix, b"") for suffix in (".png", ".jpg", ".dcm", "")]


def text_as_image(rng, r):
    texts = [b"hello, this is not an image\n" * (r + 1), b"<html><body><img src=x onerror=alert(1)></body></html>",
             b'{"image": "chest.png", "label": "covid"}', b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
             b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>']
    return [(suffix, texts[(i + r) % len(texts)]) for i, suffix in enumerate((".png", ".jpg", ".dcm"))]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(width: int, height: int, bit_depth: int = 1, colour_type: int = 0, rows: int | None = None) -> bytes:
    """A PNG of `width`x`height` zero pixels (all `rows` rows encoded, default all): tiny file, huge decode."""
    row = b"\0" * (1 + (width * bit_depth * (3 if colour_type == 2 else 1) + 7) // 8)
    compressor, parts = zlib.compressobj(9), []
    block = row * max(1, 2**20 // len(row))
    rows_left = height if rows is None else rows
    per_block = len(block) // len(row)
    while rows_left > 0:
        take = min(rows_left, per_block)
        parts.append(compressor.compress(block[: take * len(row)]))
        rows_left -= take
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))


def decompression_bomb(rng, r):
    side = (30000, 50000, 20000, 40000)[r % 4]
    out = [(".png", _bomb_png(side, side, bit_depth=1)),  # 0.9-2.5 Gpixel, a few hundred KB on disk
           (".png", _bomb_png(side, side, bit_depth=8, rows=64))]  # header promises it, data stops early
    if r % 2 == 0:
        out.append((".png", _bomb_png(12000, 12000, bit_depth=8)))  # 144 Mpixel: above PIL's warning threshold
    return out


def sixteen_bit_png(rng, r):
    size = 64 + 64 * r
    full = _noise(rng, (size, size), np.uint16)
    constant = np.full((size, size), 1000 + r, dtype=np.uint16)
    low = (_noise(rng, (size, size), np.uint16) % 16).astype(np.uint16)  # 12-bit style data in a 16-bit container
    return [(".png", encode_image(Image.fromarray(a), "PNG")) for a in (full, constant, low)]


def high_depth_tiff(rng, r):
    size = 48 + 16 * r
    floats = rng.normal(0, 1e6, (size, size)).astype(np.float32)
    with_nan = floats.copy()
    with_nan[:: 3 + r] = np.nan
    ints = rng.integers(-2**31, 2**31 - 1, size=(size, size), dtype=np.int64).astype(np.int32)
    return [(".tif", encode_image(Image.fromarray(a), "TIFF")) for a in (floats, with_nan, ints)]


def cmyk_jpeg(rng, r):
    image = Image.fromarray(_noise(rng, (96 + 32 * r, 120, 3))).convert("CMYK")
    return [(".jpg", encode_image(image, "JPEG", quality=85)), (".jpeg", encode_image(image, "JPEG", quality=40))]


def odd_modes_png(rng, r):
    size = 40 + 20 * r
    rgba = Image.fromarray(_noise(rng, (size, size, 4)), "RGBA")
    la = Image.fromarray(_noise(rng, (size, size, 2)), "LA")
    palette = Image.fromarray(_noise(rng, (size, size, 3))).convert("P")
    palette.info["transparency"] = 0
    one_bit = Image.fromarray(_noise(rng, (size, size)) > 127)
    transparent = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    return [(".png", encode_image(im, "PNG", **({"transparency": 0} if im.mode == "P" else {})))
            for im in (rgba, la, palette, one_bit, transparent)]


def gif(rng, r):
    frames = [Image.fromarray(_noise(rng, (64, 64))).convert("P") for _ in range(3 + r)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return [(".gif", buffer.getvalue()), (".gif", encode_image(frames[0], "GIF"))]


def huge(rng, r):
    side = (8000, 6000, 8000, 7000)[r % 4]
    grey = Image.new("L", (side, side), 128)
    out = [(".png", encode_image(grey, "PNG"))]
    if r % 2 == 0:
        out.append((".jpg", encode_image(Image.new("RGB", (side, side), (90, 90, 90)), "JPEG", quality=50)))
    return out


def tiny_and_thin(rng, r):
    shapes = [(1, 1), (2, 2), (1, 5000 + r), (5000 + r, 1), (3, 3)]
    return [(".png", encode_image(Image.fromarray(_noise(rng, shape)), "PNG")) for shape in shapes]


def _dicom_dataset(transfer_syntax=None):
    """An empty DX secondary-capture dataset with its file meta (explicit VR little endian unless told)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    return ds


def dicom_bytes(rows: int, cols: int, pixels: bytes | None, *, transfer_syntax=None, photometric="MONOCHROME2",
           bits: int = 16, bits_stored: int | None = None) -> bytes:
    from pydicom import dcmwrite

    ds = _dicom_dataset(transfer_syntax)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (3 if photometric == "RGB" else 1), photometric
    if photometric == "RGB":
        ds.PlanarConfiguration = 0
    stored = bits_stored or bits
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, stored, stored - 1, 0
    if pixels is not None:
        ds.PixelData = pixels
    if transfer_syntax is not None and transfer_syntax.is_compressed:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([pixels or b"\0" * 8])
        ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def bad_dicom(rng, r):
    from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

    rows = 32 + 16 * r
    good = _noise(rng, (rows, rows), np.uint16).tobytes()
    compressed = (JPEG2000Lossless, JPEGLSLossless, RLELossless)[r % 3]
    return [(".dcm", dicom_bytes(rows, rows, None)),  # no pixel data at all
            (".dcm", dicom_bytes(rows, rows, good[: len(good) // 3])),  # pixel data shorter than Rows x Columns
            (".dcm", dicom_bytes(0, 0, b"")),  # zero rows/columns
            # a garbage compressed stream
            (".dcm", dicom_bytes(rows, rows, _noise(rng, (64,)).tobytes(), transfer_syntax=compressed)),
            (".dcm", b"\0" * 128 + b"DICM" + _noise(rng, (200 + r,)).tobytes()),  # preamble, then junk
            (".dcm", dicom_bytes(rows, rows, good)[: 200 + 40 * r])]  # truncated inside the header/data


def patched_dicom(pixels: np.ndarray | None, *, drop=(), raw=None, transfer_syntax=None, **attributes) -> bytes:
    """A valid 16-bit (or `pixels`' dtype) MONOCHROME2 DICOM, then attributes dropped, replaced or made invalid.

    raw: keyword -> text written verbatim under the attribute's own VR (e.g. "abc" as a DS), which pydicom refuses
    to write: it is written as LO and the VR bytes are patched afterwards (explicit VR little endian).
    """
    from pydicom import dcmwrite
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    pixels = np.zeros((8, 8), np.uint16) if pixels is None else pixels
    ds = _dicom_dataset(transfer_syntax)
    (ds.Rows, ds.Columns), ds.SamplesPerPixel = pixels.shape[-2:], 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds["PixelData"].VR = "OW" if pixels.dtype.itemsize > 1 else "OB"  # stays resolvable without BitsAllocated
    for keyword in drop:
        delattr(ds, keyword)
    for keyword, value in attributes.items():
        tag = tag_for_keyword(keyword)
        if value is None:  # present but empty (zero length)
            ds.add_new(tag, dictionary_VR(tag).split(" or ")[0], None)
        elif keyword.endswith("PaletteColorLookupTableData"):
            ds.add_new(tag, "OW", value)
        else:
            setattr(ds, keyword, value)
    patches = []
    for keyword, text in (raw or {}).items():
        tag = tag_for_keyword(keyword)
        ds.add_new(tag, "LO", text)
        tag_bytes = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        patches.append((tag_bytes + b"LO", tag_bytes + dictionary_VR(tag).encode()))
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    data = buffer.getvalue()
    for old, new in patches:
        data = data.replace(old, new, 1)
    return data


def _lut_item(descriptor, data):
    from pydicom.dataset import Dataset

    item = Dataset()
    if descriptor is not None:
        item.LUTDescriptor = descriptor
    if data is not None:
        item.add_new(0x00283006, "US", data)  # LUTData; its VR (US/OW) is ambiguous without a hint
    return item


def malformed_dicom_cases(rng: np.random.Generator, r: int = 0) -> list[tuple[str, bytes]]:
    """(label, file): every DICOM attribute the reader uses missing, empty, non-numeric, out of range, inconsistent.

    Labels are `attribute-problem`; some are valid and must decode (a missing optional attribute, an empty type-2
    value, a window with width < 1, which the standard says to ignore).
    """
    from pydicom.sequence import Sequence

    side = 8 + 4 * r
    pixels = (_noise(rng, (side, side), np.uint16) % 4096).astype(np.uint16)
    frames3 = np.stack([pixels] * 3)
    grey8 = _noise(rng, (side, side))
    rgb = _noise(rng, (side, side, 3))
    as_rgb = dict(Rows=side, Columns=side, SamplesPerPixel=3, raw={"PhotometricInterpretation": "RGB"})

    def lut(descriptor, data):
        return Sequence([_lut_item(descriptor, data)])

    cases = {
        "Rows-missing": dict(drop=["Rows"]), "Rows-empty": dict(Rows=None), "Rows-zero": dict(Rows=0),
        "Rows-too-many-for-data": dict(Rows=side * 2), "Columns-missing": dict(drop=["Columns"]),
        "Columns-empty": dict(Columns=None), "Columns-zero": dict(Columns=0),
        "Rows-Columns-huge-declared": dict(Rows=60000, Columns=60000),  # a small file that declares 3.6 Gpixel
        "SamplesPerPixel-missing": dict(drop=["SamplesPerPixel"]), "SamplesPerPixel-zero": dict(SamplesPerPixel=0),
        "SamplesPerPixel-3-for-monochrome": dict(SamplesPerPixel=3),
        "BitsAllocated-missing": dict(drop=["BitsAllocated"]), "BitsAllocated-12": dict(BitsAllocated=12),
        "BitsAllocated-zero": dict(BitsAllocated=0), "BitsStored-missing": dict(drop=["BitsStored"]),
        "BitsStored-zero": dict(BitsStored=0), "BitsStored-above-allocated": dict(BitsStored=17),
        "PixelRepresentation-missing": dict(drop=["PixelRepresentation"]),
        "PixelRepresentation-2": dict(PixelRepresentation=2),
        "NumberOfFrames-non-numeric": dict(raw={"NumberOfFrames": "abc"}),
        "NumberOfFrames-empty": dict(raw={"NumberOfFrames": ""}),
        "NumberOfFrames-zero": dict(raw={"NumberOfFrames": "0"}),
        "NumberOfFrames-negative": dict(raw={"NumberOfFrames": "-1"}),
        "NumberOfFrames-fraction": dict(raw={"NumberOfFrames": "2.5"}),
        "NumberOfFrames-more-than-data": dict(raw={"NumberOfFrames": "3"}),
        "NumberOfFrames-huge": dict(raw={"NumberOfFrames": "99999999"}),
        "NumberOfFrames-3-valid": dict(pixels=frames3, NumberOfFrames=3),
        "PhotometricInterpretation-missing": dict(drop=["PhotometricInterpretation"]),
        "PhotometricInterpretation-empty": dict(raw={"PhotometricInterpretation": ""}),
        "PhotometricInterpretation-unknown": dict(raw={"PhotometricInterpretation": "FOO"}),
        "PhotometricInterpretation-two-values": dict(raw={"PhotometricInterpretation": "MONOCHROME2\\RGB"}),
        "PhotometricInterpretation-RGB-one-sample": dict(raw={"PhotometricInterpretation": "RGB"}),
        "PALETTE-COLOR-without-tables": dict(pixels=grey8, raw={"PhotometricInterpretation": "PALETTE COLOR"}),
        "PALETTE-COLOR-tables-too-short": dict(
            pixels=grey8, raw={"PhotometricInterpretation": "PALETTE COLOR"},
            RedPaletteColorLookupTableDescriptor=[256, 0, 8], GreenPaletteColorLookupTableDescriptor=[256, 0, 8],
            BluePaletteColorLookupTableDescriptor=[256, 0, 8], RedPaletteColorLookupTableData=b"\0\1",
            GreenPaletteColorLookupTableData=b"\0\1", BluePaletteColorLookupTableData=b"\0\1"),
        "RescaleSlope-non-numeric": dict(raw={"RescaleSlope": "abc"}),
        "RescaleSlope-empty": dict(raw={"RescaleSlope": ""}), "RescaleSlope-zero": dict(raw={"RescaleSlope": "0"}),
        "RescaleSlope-infinite": dict(raw={"RescaleSlope": "inf"}),
        "RescaleSlope-nan": dict(raw={"RescaleSlope": "nan"}),
        "RescaleSlope-two-values": dict(raw={"RescaleSlope": "1\\2"}),
        "RescaleIntercept-non-numeric": dict(raw={"RescaleIntercept": "x1"}),
        "RescaleIntercept-nan": dict(raw={"RescaleIntercept": "nan"}),
        "WindowCenter-non-numeric": dict(raw={"WindowCenter": "abc"}, WindowWidth=400),
        "WindowWidth-non-numeric": dict(raw={"WindowWidth": "wide"}, WindowCenter=1000),
        "WindowWidth-infinite": dict(raw={"WindowWidth": "inf"}, WindowCenter=1000),
        "WindowCenter-nan": dict(raw={"WindowCenter": "nan"}, WindowWidth=400),
        "WindowWidth-zero": dict(WindowCenter=1000, WindowWidth=0),  # invalid per PS3.3: ignored
        "WindowWidth-missing": dict(WindowCenter=1000),
        "WindowWidth-second-value-non-numeric": dict(WindowCenter=1000, raw={"WindowWidth": "400\\x"}),
        "VOILUTFunction-unknown": dict(WindowCenter=1000, WindowWidth=400, raw={"VOILUTFunction": "CUBIC"}),
        "VOILUTSequence-empty": dict(VOILUTSequence=Sequence([])),
        "VOILUTSequence-shorter-than-descriptor": dict(VOILUTSequence=lut([4096, 0, 12], [0, 100, 200, 4095])),
        "VOILUTSequence-without-data": dict(VOILUTSequence=lut([4, 0, 8], None)),
        "VOILUTSequence-without-descriptor": dict(VOILUTSequence=lut(None, [0, 100, 200, 255])),
        "VOILUTSequence-descriptor-two-values": dict(VOILUTSequence=lut([4, 0], [0, 100, 200, 255])),
        "ModalityLUTSequence-empty": dict(ModalityLUTSequence=Sequence([])),
        "ModalityLUTSequence-shorter-than-descriptor": dict(ModalityLUTSequence=lut([4096, 0, 16], [0, 9])),
        "PixelData-missing": dict(drop=["PixelData"]), "PixelData-empty": dict(PixelData=b""),
        "PixelData-short": dict(PixelData=pixels.tobytes()[: pixels.nbytes // 2]),
        "Modality-missing": dict(drop=["Modality"]), "Modality-empty": dict(Modality=None),
        "Modality-two-values": dict(raw={"Modality": "CT\\DX"}),
        "PlanarConfiguration-missing-for-RGB": dict(pixels=rgb, **as_rgb),
        "PlanarConfiguration-2": dict(pixels=rgb, PlanarConfiguration=2, **as_rgb),
        "PlanarConfiguration-0-valid-RGB": dict(pixels=rgb, PlanarConfiguration=0, **as_rgb),
        # bytes patched after writing: an unknown transfer syntax UID, an unknown VR on Rows
        "TransferSyntaxUID-unknown": dict(patch=(b"1.2.840.10008.1.2.1\0", b"1.2.840.99999.1.2.1\0")),
        "Rows-unknown-VR": dict(patch=(b"\x28\x00\x10\x00US", b"\x28\x00\x10\x00UQ")),
    }
    out = []
    for label, spec in cases.items():
        spec = dict(spec)
        old, new = spec.pop("patch", (b"", b""))
        data = patched_dicom(spec.pop("pixels", pixels), **spec)
        out.append((label, data.replace(old, new, 1) if old else data))
    out.append(("deflated-bomb", deflated_dicom(10000 + 2000 * (r % 2))))  # 200-288 MB inflated
    return out


def deflated_dicom(side: int) -> bytes:
    """A deflated DICOM of side x side zero 16-bit pixels: a few hundred KB on disk, 2 * side**2 bytes inflated."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    return patched_dicom(np.zeros((side, side), np.uint16), transfer_syntax=DeflatedExplicitVRLittleEndian)


def malformed_dicom(rng, r):
    return [(".dcm", data) for _, data in malformed_dicom_cases(rng, r)]


def random_bytes(rng, r):
    suffixes = (".png", ".jpg", ".jpeg", ".dcm", ".bin", "", ".tif", ".webp")
    return [(suffix, _noise(rng, (int(rng.integers(1, 20000)),)).tobytes()) for suffix in suffixes]


def wrong_extension(rng, r):
    png = encode_image(Image.fromarray(_noise(rng, (100, 90))), "PNG")
    jpeg = encode_image(Image.fromarray(_noise(rng, (90, 100))), "JPEG")
    dicom = dicom_bytes(64, 64, _noise(rng, (64, 64), np.uint16).tobytes())
    webp = encode_image(Image.fromarray(_noise(rng, (70, 70, 3))), "WEBP")
    bmp = encode_image(Image.fromarray(_noise(rng, (50, 60))), "BMP")
    return [(".jpg", png), (".dcm", jpeg), (".png", dicom), (".png", webp), (".jpg", bmp), ("", png)]


def corrupted_inside(rng, r):
    """Valid files with bytes flipped in the middle (bad CRC, broken Huffman data, broken zlib stream)."""
    out = []
    for fmt, suffix in (("PNG", ".png"), ("JPEG", ".jpg"), ("TIFF", ".tif"), ("BMP", ".bmp"), ("WEBP", ".webp")):
        data = bytearray(encode_image(Image.fromarray(_noise(rng, (120, 120))), fmt))
        start = len(data) // 3
        data[start: start + 64 + 16 * r] = _noise(rng, (64 + 16 * r,)).tobytes()
        out.append((suffix, bytes(data)))
    return out


def truncated_bmp_webp_tiff(rng, r):
    """The other accepted formats cut short: every Pillow plug-in the decoder lets through gets broken input."""
    image = Image.fromarray(_noise(rng, (96 + 16 * r, 80)))
    out = []
    for fmt, suffix in (("BMP", ".bmp"), ("WEBP", ".webp"), ("TIFF", ".tif")):
        data = encode_image(image, fmt)
        out += [(suffix, data[: max(1, int(len(data) * f))]) for f in (0.05, 0.5, 0.97)]
    return out


def refused_formats(rng, r):
    """Valid images in formats Pillow reads but the decoder does not accept (refused with the format's name)."""
    image = Image.fromarray(_noise(rng, (32 + 8 * r, 32)))
    return [(suffix, encode_image(image, fmt)) for fmt, suffix in
            (("ICO", ".ico"), ("PPM", ".ppm"), ("TGA", ".tga"), ("PCX", ".pcx"), ("SGI", ".sgi"), ("GIF", ".png"))]


def odd_modes_tiff(rng, r):
    """TIFFs in modes Pillow opens but may not convert (CIELAB), and YCbCr/CMYK/RGBX/PA."""
    size = 24 + 8 * r
    modes = ("LAB", "YCbCr", "CMYK", "RGBX", "PA")
    return [(".tif", encode_image(Image.new(mode, (size, size)), "TIFF")) for mode in modes]


def multi_page_tiff(rng, r):
    pages = [Image.fromarray(_noise(rng, (64, 64))) for _ in range(2 + r)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    return [(".tif", buffer.getvalue())]


SAMPLES = Path(__file__).resolve().parents[1] / "hf_deitcxr" / "sample_data" / "cxr3_sample"


def _radiograph(index: int) -> np.ndarray:
    files = sorted(SAMPLES.rglob("*.jpg"))
    return np.asarray(Image.open(files[index % len(files)]).convert("L"))


def radiograph_encodings(rng, r):
    """Real radiographs (the bundled sample) in unusual but valid encodings: these reach the model."""
    grey = _radiograph(r)
    image = Image.fromarray(grey)
    alpha = np.broadcast_to(np.linspace(0, 255, grey.shape[1], dtype=np.uint8), grey.shape)  # transparent at left
    rgba = np.dstack([grey, grey, grey, alpha])
    floats = grey.astype(np.float32) * 37.5 - 1000.0
    floats[:20] = np.nan  # a band of NaN, as a broken float export would have
    floats[-5:] = np.inf
    frames = [Image.fromarray(np.roll(grey, 8 * k, axis=1)).convert("P") for k in range(3)]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    height, width = grey.shape
    wide = np.zeros((height, 3 * width), dtype=np.uint8)
    wide[:, width: 2 * width] = grey  # letterboxed: a 3:1 canvas
    big = image.resize((8000, 8000), Image.Resampling.BILINEAR) if r % 2 == 0 else None
    out = [(".png", encode_image(Image.fromarray(grey.astype(np.uint16) * 257), "PNG")),  # 16-bit, full range
           (".png", encode_image(Image.fromarray(grey.astype(np.uint16) * 16), "PNG")),  # 12-bit data in 16 bits
           (".jpg", encode_image(image.convert("RGB").convert("CMYK"), "JPEG", quality=90)),
           (".png", encode_image(Image.fromarray(rgba, "RGBA"), "PNG")),
           (".png", encode_image(image.convert("LA"), "PNG")),
           (".png", encode_image(image.convert("P"), "PNG")),
           (".gif", animated.getvalue()),
           (".tif", encode_image(Image.fromarray(floats), "TIFF")),
           (".tif", encode_image(Image.fromarray(grey.astype(np.uint16) * 257), "TIFF")),
           (".bmp", encode_image(image, "BMP")), (".webp", encode_image(image, "WEBP", quality=80)),
           (".png", encode_image(Image.fromarray(wide), "PNG")),
           (".png", encode_image(image.resize((1, 1)), "PNG")),
           (".dcm", dicom_bytes(height, width, (4095 - grey.astype(np.uint16) * 16).tobytes(),
                                photometric="MONOCHROME1", bits_stored=12)),
           (".dcm", dicom_bytes(height, width, np.dstack([grey] * 3).tobytes(), photometric="RGB", bits=8))]
    if big is not None:
        out.append((".jpg", encode_image(big, "JPEG", quality=85)))  # 8000x8000 radiograph, ~several MB
    return out


GENERATORS: list[tuple[str, Callable[[np.random.Generator, int], list[tuple[str, bytes]]]]] = [
    ("truncated_png", truncated_png), ("truncated_jpeg", truncated_jpeg), ("zero_byte", zero_byte),
    ("text_as_image", text_as_image), ("decompression_bomb", decompression_bomb), ("png16", sixteen_bit_png),
    ("tiff_float_int32", high_depth_tiff), ("cmyk_jpeg", cmyk_jpeg), ("odd_mode_png", odd_modes_png),
    ("gif", gif), ("huge", huge), ("tiny_or_thin", tiny_and_thin), ("bad_dicom", bad_dicom),
    ("malformed_dicom", malformed_dicom),
    ("random_bytes", random_bytes), ("wrong_extension", wrong_extension), ("corrupted_inside", corrupted_inside),
    ("multipage_tiff", multi_page_tiff), ("truncated_bmp_webp_tiff", truncated_bmp_webp_tiff),
    ("refused_format", refused_formats), ("odd_mode_tiff", odd_modes_tiff),
    ("radiograph_encoding", radiograph_encodings),
]


def kinds() -> Iterator[str]:
    return (kind for kind, _ in GENERATORS)

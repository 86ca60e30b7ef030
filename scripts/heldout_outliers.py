"""HELD-OUT kinds for measuring the Space's input check: written after the rule (statistics + gate) was fixed, never
used to fit or tune it (`radiograph_outliers.py` holds the design kinds). Used by
`measure_input_rejection.py --heldout true`, with seeds the design runs did not use.

Two rounds. Round 1 measured the first gate; four of its kinds that the gate missed (bright gamma, upside down, the
lower and upper strips) then became design kinds of the second gate, so round 1 no longer measures it. Round 2
(`ROUND = 2`) was written after the second gate's design was fixed, before it was measured.

Round 1 outliers (should be refused): real mammogram mass crops (CBIS-DDSM, another modality), a negative (inverted)
radiograph, upside down, rotated 30-60 degrees, bright gamma, low contrast with a brightness offset, the lower or the
upper strip of the chest, a light-theme viewer screenshot, a 2 x 2 collage, a small radiograph in a wide frame, a
film photographed on a lightbox, and a CT-like phantom (Shepp-Logan ellipses).
Benign (should pass): flipped + strong JPEG, downscaled to 128 px and back, sharpened, histogram-equalised,
contrast x0.6-0.7, a 12 degree rotation, an 80-90 % crop.

Round 2 outliers: the vertical middle strip (spine and mediastinum), posterised to 3-4 grey levels, heavy speckle
noise, a 3 x 3 grid, a printout photographed on paper with text, measurement graphics drawn over the radiograph,
heavily blurred, solarised, an ultrasound-like sector. Round 2 benign: Gaussian noise, JPEG q8, a 70-80 % crop, a
brightness offset, a median filter, contrast x0.5-0.6, a black border (as computed radiography plates leave).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from radiograph_outliers import crop_resized, gamma, scaled_contrast

ROUND = 2

CBIS_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "cbis_mass" / "images"


def inverted(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    return ImageOps.invert(image)


def upside_down(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    return image.rotate(180 + float(rng.uniform(-5, 5)), resample=Image.BICUBIC)


def tilted(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    angle = float(rng.uniform(30, 60) * rng.choice([-1, 1]))
    return image.rotate(angle, resample=Image.BICUBIC, fillcolor=int(rng.integers(0, 60)))


def bright_gamma(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    return gamma(image, rng.uniform(0.15, 0.3))


def washed_out(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    return scaled_contrast(image, rng.uniform(0.2, 0.3), rng.uniform(40, 80) * rng.choice([-1, 1]))


def lower_strip(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    return crop_resized(image, (0.0, rng.uniform(0.55, 0.7), 1.0, 1.0))


def upper_strip(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    return crop_resized(image, (0.0, 0.0, 1.0, rng.uniform(0.25, 0.4)))


def screenshot_light(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """A light-theme web viewer: header bar, a report column on the right, the radiograph on the left."""
    width, height = int(rng.integers(800, 1300)), int(rng.integers(500, 800))
    canvas = Image.new("L", (width, height), int(rng.integers(225, 250)))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, width, int(height * 0.09)), fill=int(rng.integers(90, 140)))
    side = int(height * rng.uniform(0.55, 0.8))
    canvas.paste(image.resize((side, side)), (int(width * 0.03), int(height * 0.12)))
    for line in range(int(rng.integers(8, 20))):
        y = int(height * 0.14) + 24 * line
        draw.text((int(width * 0.6), y), "Findings: " + "lorem ipsum " * int(rng.integers(1, 4)), fill=30,
                  font_size=16)
    return canvas


def tiled(rng: np.random.Generator, image: Image.Image, others: list[Image.Image], per_side: int,
          tile_size: int) -> Image.Image:
    """The radiograph and per_side^2 - 1 others in a per_side x per_side grid."""
    canvas = Image.new("L", (per_side * tile_size, per_side * tile_size), 0)
    picks = rng.choice(len(others), per_side * per_side - 1, replace=False)
    for index, tile in enumerate([image] + [others[int(i)] for i in picks]):
        row, column = divmod(index, per_side)
        canvas.paste(tile.resize((tile_size, tile_size)), (column * tile_size, row * tile_size))
    return canvas


def collage(rng: np.random.Generator, image: Image.Image, others: list[Image.Image]) -> Image.Image:
    return tiled(rng, image, others, 2, 224)


def small_in_frame(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    width, height = int(rng.integers(500, 900)), int(rng.integers(400, 700))
    canvas = Image.new("L", (width, height), int(rng.choice([0, 128, 255])))
    side = int(min(width, height) * rng.uniform(0.25, 0.45))
    canvas.paste(image.resize((side, side)), (int(rng.integers(0, width - side)), int(rng.integers(0, height - side))))
    return canvas


def lightbox_photo(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """A film on a bright lightbox, photographed: bright surround, perspective, uneven light, blur."""
    size = 400
    canvas = Image.new("L", (size, size), int(rng.integers(225, 255)))
    canvas.paste(image.resize((int(size * 0.6), int(size * 0.75))), (int(size * 0.2), int(size * 0.12)))
    jitter = rng.uniform(-0.1, 0.1, 8) * size
    corners = np.array([0, 0, 0, size, size, size, size, 0], dtype=np.float64) + jitter
    canvas = canvas.transform((size, size), Image.QUAD, tuple(corners), resample=Image.BICUBIC, fillcolor=200)
    yy, xx = np.mgrid[0:size, 0:size] / size
    light = 1 - 0.35 * ((xx - rng.uniform(0.3, 0.7)) ** 2 + (yy - rng.uniform(0.3, 0.7)) ** 2)
    values = np.asarray(canvas, dtype=np.float64) * light
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.0))


def ct_phantom(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """The Shepp-Logan phantom (a standard CT test slice), jittered in size and intensity; the radiograph unused."""
    size = int(rng.integers(256, 512))
    ellipses = [  # (value, semi-axis x, semi-axis y, centre x, centre y, angle in degrees)
        (1.0, 0.69, 0.92, 0, 0, 0), (-0.8, 0.6624, 0.874, 0, -0.0184, 0), (-0.2, 0.11, 0.31, 0.22, 0, -18),
        (-0.2, 0.16, 0.41, -0.22, 0, 18), (0.1, 0.21, 0.25, 0, 0.35, 0), (0.1, 0.046, 0.046, 0, 0.1, 0),
        (0.1, 0.046, 0.046, 0, -0.1, 0), (0.1, 0.046, 0.023, -0.08, -0.605, 0), (0.1, 0.023, 0.023, 0, -0.606, 0),
        (0.1, 0.023, 0.046, 0.06, -0.605, 0),
    ]
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    values = np.zeros((size, size))
    for value, ax, ay, cx, cy, angle in ellipses:
        theta = np.deg2rad(angle)
        x, y = xx - cx, yy - cy
        u, v = x * np.cos(theta) + y * np.sin(theta), -x * np.sin(theta) + y * np.cos(theta)
        values += value * rng.uniform(0.8, 1.2) * ((u / ax) ** 2 + (v / ay) ** 2 <= 1)
    values = (values - values.min()) / (np.ptp(values) + 1e-9) * 255
    return Image.fromarray(values.astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))


def mammogram_crops(rng: np.random.Generator, count: int) -> list[Image.Image]:
    files = sorted(CBIS_IMAGES.rglob("*.png"))
    if not files:
        return []
    picks = rng.choice(len(files), min(count, len(files)), replace=False)
    return [Image.open(files[int(i)]).convert("L") for i in picks]


def heldout_outliers(images: list[Image.Image], per_kind: int, seed: int) -> Iterator[tuple[str, Image.Image]]:
    rng = np.random.default_rng(seed)
    for mammogram in mammogram_crops(rng, per_kind):
        yield "mammogram crop (CBIS-DDSM)", mammogram
    kinds = {
        "inverted (negative)": inverted, "upside down": upside_down, "tilted 30-60 deg": tilted,
        "bright gamma (0.15-0.3)": bright_gamma, "washed out (x0.2-0.3, offset)": washed_out,
        "lower strip of the chest": lower_strip, "upper strip of the chest": upper_strip,
        "viewer screenshot (light)": screenshot_light, "small radiograph in a wide frame": small_in_frame,
        "film on a lightbox, photographed": lightbox_photo, "CT-like phantom": ct_phantom,
    }
    for kind, make in kinds.items():
        for index in rng.choice(len(images), size=min(per_kind, len(images)), replace=False):
            yield kind, make(rng, images[int(index)])
    for index in rng.choice(len(images), size=min(per_kind, len(images)), replace=False):
        yield "2 x 2 collage", collage(rng, images[int(index)], images)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


HELDOUT_BENIGN = {
    "flipped + JPEG q15": lambda rng, image: _jpeg(ImageOps.mirror(image), 15),
    "downscaled to 128 px and back": lambda rng, image: image.resize((128, 128)).resize(image.size, Image.BICUBIC),
    "sharpened (unsharp mask)": lambda rng, image: image.filter(ImageFilter.UnsharpMask(3, 150, 2)),
    "histogram-equalised": lambda rng, image: ImageOps.equalize(image),
    "contrast x0.6-0.7": lambda rng, image: scaled_contrast(image, rng.uniform(0.6, 0.7)),
    "rotated 12 deg": lambda rng, image: image.rotate(float(12 * rng.choice([-1, 1])), resample=Image.BICUBIC),
    "80-90 % crop": lambda rng, image: crop_resized(image, (0.05, 0.05, 0.05 + rng.uniform(0.8, 0.9),
                                                            0.05 + rng.uniform(0.8, 0.9))),
}

# --- round 2 -----------------------------------------------------------------------------------------------------


def middle_strip(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    width = rng.uniform(0.2, 0.35)
    left = 0.5 - width / 2 + rng.uniform(-0.05, 0.05)
    return crop_resized(image, (left, 0.0, left + width, 1.0))


def posterised(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    levels = int(rng.integers(3, 5))
    values = np.asarray(image, dtype=np.float64)
    return Image.fromarray((np.floor(values / 256 * levels) * (255 / (levels - 1))).astype(np.uint8))


def speckled(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64) + rng.normal(0, rng.uniform(40, 60), image.size[::-1])
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))


def grid_3x3(rng: np.random.Generator, image: Image.Image, others: list[Image.Image]) -> Image.Image:
    return tiled(rng, image, others, 3, 150)


def printout_photo(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """A printed page photographed: white paper, the radiograph in the upper part, lines of text below, a desk."""
    page = Image.new("L", (420, 594), int(rng.integers(225, 250)))
    draw = ImageDraw.Draw(page)
    page.paste(image.resize((300, 300)), (60, 50))
    for line in range(10):
        draw.text((40, 380 + 18 * line), "Report " + "text " * int(rng.integers(3, 12)), fill=40, font_size=13)
    canvas = Image.new("L", (700, 700), int(rng.integers(60, 140)))
    canvas.paste(page.rotate(float(rng.uniform(-15, 15)), expand=True, fillcolor=100), (80, 20))
    return canvas.filter(ImageFilter.GaussianBlur(0.8))


def measurement_graphics(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    canvas = image.copy()
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    for _ in range(int(rng.integers(6, 12))):
        x0, y0, x1, y1 = (int(v) for v in rng.uniform(0, 1, 4) * (w, h, w, h))
        if rng.random() < 0.5:
            draw.line((x0, y0, x1, y1), fill=255, width=int(rng.integers(3, 7)))
        else:
            draw.ellipse((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), outline=255, width=4)
        draw.text((x1, y1), f"{rng.uniform(1, 30):.1f} mm", fill=255, font_size=int(rng.integers(14, 24)))
    return canvas


def heavily_blurred(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(6, 10)))


def solarised(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    return ImageOps.solarize(image, int(rng.integers(100, 160)))


def ultrasound_sector(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Speckle inside a fan-shaped sector on black, as an ultrasound frame looks; the radiograph is not used."""
    size = int(rng.integers(300, 500))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    radius, angle = np.hypot(xx - size / 2, yy), np.arctan2(xx - size / 2, yy)
    inside = (radius < size * 0.95) & (np.abs(angle) < rng.uniform(0.5, 0.8))
    speckle = rng.rayleigh(40, (size, size)) * (1 + 0.5 * np.sin(radius / rng.uniform(10, 30)))
    values = np.where(inside, speckle, 0)
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.0))


def round2_outliers(images: list[Image.Image], per_kind: int, seed: int) -> Iterator[tuple[str, Image.Image]]:
    rng = np.random.default_rng(seed)
    kinds = {
        "vertical middle strip": middle_strip, "posterised (3-4 levels)": posterised, "heavy speckle noise": speckled,
        "printout photographed": printout_photo, "measurement graphics drawn over": measurement_graphics,
        "heavily blurred (sigma 6-10)": heavily_blurred, "solarised": solarised,
        "ultrasound-like sector": ultrasound_sector,
    }
    for kind, make in kinds.items():
        for index in rng.choice(len(images), size=min(per_kind, len(images)), replace=False):
            yield kind, make(rng, images[int(index)])
    for index in rng.choice(len(images), size=min(per_kind, len(images)), replace=False):
        yield "3 x 3 grid", grid_3x3(rng, images[int(index)], images)


def _noisy(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64) + rng.normal(0, rng.uniform(8, 12), image.size[::-1])
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))


def _black_border(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    w, h = image.size
    border = int(w * rng.uniform(0.05, 0.12))
    canvas = Image.new("L", (w + 2 * border, h + 2 * border), 0)
    canvas.paste(image, (border, border))
    return canvas


ROUND2_BENIGN = {
    "Gaussian noise (sigma 8-12)": _noisy,
    "JPEG q8": lambda rng, image: _jpeg(image, 8),
    "70-80 % crop": lambda rng, image: crop_resized(image, (0.1, 0.08, 0.1 + rng.uniform(0.83, 0.89),
                                                            0.08 + rng.uniform(0.83, 0.89))),
    "brightness offset +-30": lambda rng, image: scaled_contrast(image, 1.0, 30 * rng.choice([-1, 1])),
    "median filter 3": lambda rng, image: image.filter(ImageFilter.MedianFilter(3)),
    "contrast x0.5-0.6": lambda rng, image: scaled_contrast(image, rng.uniform(0.5, 0.6)),
    "black border 5-12 %": _black_border,
}


def heldout_sets(images: list[Image.Image], per_kind: int, seed: int, round_: int = ROUND):
    """(outlier examples, benign kinds) of a held-out round."""
    if round_ == 1:
        return heldout_outliers(images, per_kind, seed), HELDOUT_BENIGN
    return round2_outliers(images, per_kind, seed), ROUND2_BENIGN


__all__ = ["HELDOUT_BENIGN", "ROUND", "ROUND2_BENIGN", "heldout_outliers", "heldout_sets", "round2_outliers"]

"""HELD-OUT kinds for measuring the Space's input check: written after the rule (statistics + gate) was fixed, never
used to fit or tune it (`radiograph_outliers.py` holds the design kinds). Used by
`measure_input_rejection.py --heldout true`, with seeds the design runs did not use.

Outliers (should be refused): real mammogram mass crops (CBIS-DDSM, another modality), a negative (inverted)
radiograph, upside down, rotated 30-60 degrees, bright gamma, low contrast with a brightness offset, the lower or the
upper strip of the chest, a light-theme viewer screenshot, a 2 x 2 collage, a small radiograph in a wide frame, a
film photographed on a lightbox, and a CT-like phantom (Shepp-Logan ellipses).
Benign (should pass): flipped + strong JPEG, downscaled to 128 px and back, sharpened, histogram-equalised,
contrast x0.6-0.7, a 12 degree rotation, an 80-90 % crop.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from radiograph_outliers import crop_resized, gamma, scaled_contrast

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


def collage(rng: np.random.Generator, image: Image.Image, others: list[Image.Image]) -> Image.Image:
    size = 224
    canvas = Image.new("L", (2 * size, 2 * size), 0)
    tiles = [image] + [others[int(i)] for i in rng.choice(len(others), 3, replace=False)]
    for index, tile in enumerate(tiles):
        canvas.paste(tile.resize((size, size)), ((index % 2) * size, (index // 2) * size))
    return canvas


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

__all__ = ["HELDOUT_BENIGN", "heldout_outliers"]

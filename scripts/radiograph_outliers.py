"""Radiographs changed into inputs the Space must refuse, and into variants it must still accept.

Used to fit the input check's gate (`fit_radiograph_gate.py`: outliers vs benign variants of training radiographs)
and to measure it (`measure_input_rejection.py`). These are the DESIGN kinds: the rule was built on them. The
held-out kinds that measure it (`heldout_outliers.py`) were written after the rule was fixed and are not used here.
Round 2 added four kinds that round 1 held out and the gate missed (bright gamma, upside down, strips of the chest)
and widened the benign contrast and gamma ranges (round 1 refused 20 % of radiographs at contrast x0.6-0.7); round 2
is measured on new held-out kinds (`heldout_outliers.ROUND`).

Outliers (each a function `(rng, radiograph) -> image`; the radiograph is an 8-bit grey PIL image):
extreme low contrast, strong gamma (dark or bright), one side of the chest, a small crop, a horizontal strip,
sideways (90/270 degrees), upside down,
a viewer screenshot (dark theme), dense burned-in text, a photographed monitor, an MRI slice, and the programmatic
non-radiographs of `measure_input_rejection.generators()` (gradients, shapes, text, noise, drawings, textures,
photo/map crops).
Benign variants (`benign_variant`): small crops and rotations, flips, blur, JPEG, noise, mild contrast and gamma,
histogram equalisation: what real radiographs from other sites look like, which must pass.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from matplotlib import cbook
from PIL import Image, ImageDraw, ImageFilter, ImageOps

Outlier = Callable[[np.random.Generator, Image.Image], Image.Image]
WORDS = "PORTABLE AP SUPINE L R ERECT PATIENT ID 0042 DOB 1960 ACC 77812 HOSPITAL RADIOLOGY KV 110 MAS 2.5".split()


def _grey_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float64)


def _to_image(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def scaled_contrast(image: Image.Image, factor: float, offset: float = 0.0) -> Image.Image:
    values = _grey_array(image)
    return _to_image(values.mean() + offset + (values - values.mean()) * factor)


def gamma(image: Image.Image, exponent: float) -> Image.Image:
    return _to_image(255.0 * (_grey_array(image) / 255.0) ** exponent)


def crop_resized(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """The crop (fractions left, top, right, bottom) resized back to the image's size, as a user's crop would be."""
    w, h = image.size
    left, top, right, bottom = box
    return image.crop((int(left * w), int(top * h), int(right * w), int(bottom * h))).resize(image.size, Image.BICUBIC)


# --- design outliers ---------------------------------------------------------------------------------------------


def low_contrast(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    return scaled_contrast(image, rng.uniform(0.12, 0.35))


def dark_gamma(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    return gamma(image, rng.uniform(2.5, 5.0))


def bright_gamma(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    return gamma(image, rng.uniform(0.12, 0.35))


def strip(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """A horizontal band of 25-45 % of the height (the neck and shoulders, the diaphragm, the abdomen)."""
    height = rng.uniform(0.25, 0.45)
    top = rng.uniform(0, 1 - height)
    return crop_resized(image, (0.0, top, 1.0, top + height))


def upside_down(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    return image.rotate(180 + float(rng.uniform(-10, 10)), resample=Image.BICUBIC, fillcolor=int(rng.integers(0, 40)))


def one_side(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """One lung: the left or right 35-55 % of the width, full height or a little less."""
    width = rng.uniform(0.35, 0.55)
    left = 0.0 if rng.random() < 0.5 else 1.0 - width
    top, bottom = rng.uniform(0, 0.1), rng.uniform(0.9, 1.0)
    return crop_resized(image, (left, top, left + width, bottom))


def small_crop(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """A random rectangle of 8-35 % of the area."""
    area = rng.uniform(0.08, 0.35)
    aspect = rng.uniform(0.6, 1.6)
    w, h = min(1.0, np.sqrt(area * aspect)), min(1.0, np.sqrt(area / aspect))
    left, top = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
    return crop_resized(image, (left, top, left + w, top + h))


def sideways(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    angle = float(rng.choice([90, 270]) + rng.uniform(-10, 10))
    return image.rotate(angle, resample=Image.BICUBIC, expand=False, fillcolor=int(rng.integers(0, 40)))


def _text(draw: ImageDraw.ImageDraw, rng: np.random.Generator, xy: tuple[int, int], size: int, fill: int) -> None:
    words = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6))))
    draw.text(xy, words, fill=fill, font_size=size)


def screenshot_dark(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """A dark-theme viewer: toolbar, series thumbnails on the left, the radiograph at 35-60 % of the window."""
    width, height = int(rng.integers(500, 900)), int(rng.integers(350, 600))
    canvas = Image.new("L", (width, height), int(rng.integers(10, 45)))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, width, int(height * 0.07)), fill=int(rng.integers(50, 90)))
    side = int(min(width, height) * rng.uniform(0.35, 0.6))
    thumbs = int(rng.integers(2, 6))
    for i in range(thumbs):
        top = int(height * 0.1) + i * (side // 3 + 8)
        canvas.paste(image.resize((side // 3, side // 3)), (8, top))
    corner = int(width * rng.uniform(0.25, 0.45)), int(height * rng.uniform(0.1, 0.3))
    canvas.paste(image.resize((side, side)), corner)
    for i in range(int(rng.integers(3, 9))):
        _text(draw, rng, (int(width * 0.72), int(height * 0.1) + 22 * i), 14, int(rng.integers(150, 255)))
    return canvas


def burned_in_text(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Several lines of large text over the radiograph (a label sheet, a report pasted in)."""
    canvas = image.copy()
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    size = int(rng.integers(max(12, h // 14), max(14, h // 7)))
    for i in range(int(rng.integers(4, 9))):
        _text(draw, rng, (int(rng.integers(0, w // 6)), int(i * size * 1.2)), size, int(rng.choice([0, 255])))
    return canvas


def monitor_photo(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """The radiograph on a screen photographed at an angle: bezel, perspective, moire, glare, blur."""
    size = 320
    screen = image.resize((int(size * 0.7), int(size * 0.7)))
    canvas = Image.new("L", (size, size), int(rng.integers(0, 30)))
    canvas.paste(screen, (int(size * 0.15), int(size * 0.15)))
    jitter = rng.uniform(-0.12, 0.12, 8) * size
    corners = np.array([0, 0, 0, size, size, size, size, 0], dtype=np.float64) + jitter
    canvas = canvas.transform((size, size), Image.QUAD, tuple(corners), resample=Image.BICUBIC)
    yy, xx = np.mgrid[0:size, 0:size]
    angle, frequency = rng.uniform(0, np.pi), rng.uniform(0.3, 0.9)
    moire = 18 * np.sin(frequency * (np.cos(angle) * xx + np.sin(angle) * yy))
    glare = 60 * np.exp(-((xx - rng.uniform(0, size)) ** 2 + (yy - rng.uniform(0, size)) ** 2) / (2 * (size / 4) ** 2))
    values = _grey_array(canvas) + moire + glare
    return _to_image(values).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))


def _mri_slice() -> Image.Image:
    with cbook.get_sample_data("s1045.ima.gz") as handle:
        values = np.frombuffer(handle.read(), np.uint16).reshape(256, 256).astype(np.float64)
    return _to_image(255 * values / values.max())


_MRI = None


def mri(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """matplotlib's MRI slice, zoomed, shifted, rotated and contrast-varied (the radiograph is not used)."""
    global _MRI
    _MRI = _MRI or _mri_slice()
    zoom = rng.uniform(0.6, 1.0)
    left, top = rng.uniform(0, 1 - zoom, 2)
    picture = crop_resized(_MRI, (left, top, left + zoom, top + zoom)).rotate(float(rng.uniform(-20, 20)))
    return gamma(picture, rng.uniform(0.5, 1.5))


DESIGN_OUTLIERS: dict[str, Outlier] = {
    "low contrast (x0.12-0.35)": low_contrast,
    "dark gamma (2.5-5)": dark_gamma,
    "bright gamma (0.12-0.35)": bright_gamma,
    "one side of the chest": one_side,
    "small crop (8-35 % area)": small_crop,
    "horizontal strip (25-45 % height)": strip,
    "sideways (90/270 deg)": sideways,
    "upside down": upside_down,
    "viewer screenshot (dark)": screenshot_dark,
    "burned-in text": burned_in_text,
    "photographed monitor": monitor_photo,
    "MRI slice": mri,
}


# --- benign variants (must pass) ---------------------------------------------------------------------------------


def benign_variant(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """A radiograph as another site might send it: each change with some probability, all within mild ranges."""
    if rng.random() < 0.5:
        area, aspect = rng.uniform(0.75, 1.0), rng.uniform(0.85, 1.15)
        w, h = min(1.0, np.sqrt(area * aspect)), min(1.0, np.sqrt(area / aspect))
        left, top = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        image = crop_resized(image, (left, top, left + w, top + h))
    if rng.random() < 0.3:
        image = image.rotate(float(rng.uniform(-8, 8)), resample=Image.BICUBIC, fillcolor=0)
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    if rng.random() < 0.4:
        image = scaled_contrast(image, rng.uniform(0.5, 1.4), rng.uniform(-20, 20))
    if rng.random() < 0.4:
        image = gamma(image, rng.uniform(0.55, 1.7))
    if rng.random() < 0.1:
        image = ImageOps.equalize(image)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    if rng.random() < 0.2:
        noisy = _grey_array(image) + rng.normal(0, rng.uniform(2, 8), image.size[::-1])
        image = _to_image(noisy)
    if rng.random() < 0.3:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(30, 90)))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("L")
    return image


__all__ = ["DESIGN_OUTLIERS", "benign_variant", "crop_resized", "gamma", "scaled_contrast"]

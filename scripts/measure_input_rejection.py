"""How often the Space's input check rejects real radiographs and what it must refuse; prints tables.

    python scripts/measure_input_rejection.py --dataset ../shared/data/cxr3 --split validation --per_kind 30 \
        [--heldout true]

(a) every image of a real radiograph split (should pass: each rejection is a false alarm);
(b) programmatic non-radiographs, `per_kind` of each kind: colour and grey gradients, random shapes (colour and
    grey), rendered text, noise (uniform, Gaussian, salt-and-pepper, smooth random fields), cartoon/line drawings,
    textures (fractal "clouds", wood, marble, checkerboards, stripes; grey or colour-mapped), and crops of the
    pictures matplotlib ships (a photo portrait, a product photo, a logo, two terrain elevation maps and an MRI
    slice; grey or colour). Every image goes through the Space's own decoder as a PNG file.

(c) design outliers made from the split's radiographs (`radiograph_outliers.DESIGN_OUTLIERS`) and (d) benign
    variants of them (should pass);
(e) with --heldout: the held-out kinds of `heldout_outliers.py`, written after the rule was fixed (and, for a
    share of them, benign held-out variants that should pass).

The statistics' thresholds come from training radiographs (`scripts/fit_radiograph_layout.py`, the defaults of
`InputCheckConfig`); the gate (`scripts/fit_radiograph_gate.py`) was trained on training radiographs against (b)'s
and (c)'s kinds, and its threshold refuses a set share of the validation radiographs. So (a) on the validation
split is partly fitted (the cross-fitted line estimates the gate's refusal rate on unseen radiographs), (b)-(d) are
optimistic, and only (e) measures kinds the rule was not designed on.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib import cbook, colormaps
from PIL import Image, ImageDraw, ImageFont
from scipy.stats import binomtest
from transformers import HfArgumentParser

from hf_deitcxr.serving import RadiographCheck, decode_upload

sys.path.insert(0, str(Path(__file__).resolve().parent))

from radiograph_outliers import DESIGN_OUTLIERS, benign_variant  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
SIZES = (128, 224, 256, 320, 480, 512, 640)
WORDS = "the quick brown fox jumps over lazy dog chest x ray report patient invoice hello world lorem ipsum".split()


@dataclass
class MeasureArguments:
    dataset: str = field(default="../shared/data/cxr3", metadata={"help": "Imagefolder root with real radiographs"})
    split: str = field(default="validation")
    per_kind: int = field(default=30, metadata={"help": "Generated non-radiographs per kind"})
    seed: int = field(default=12345)
    show_rejected: int = field(default=10, metadata={"help": "List up to this many rejected real radiographs"})
    heldout: bool = field(default=False, metadata={"help": "Also measure the held-out kinds (heldout_outliers.py)"})
    heldout_round: int = field(default=2, metadata={"help": "Which round of held-out kinds (see heldout_outliers.py)"})


# --- generated non-radiographs ----------------------------------------------------------------------------------


def _size(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.choice(SIZES)), int(rng.choice(SIZES))


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _maybe_grey(image: Image.Image, rng: np.random.Generator, p: float = 0.5) -> Image.Image:
    return image.convert("L") if rng.random() < p else image


def colour_gradient(rng: np.random.Generator) -> Image.Image:
    w, h = _size(rng)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xx + np.sin(angle) * yy
    else:
        cx, cy = rng.uniform(0, 1, 2)
        t = np.hypot(xx - cx, yy - cy)
    t = (t - t.min()) / (np.ptp(t) + 1e-9)
    start, end = np.array(_colour(rng)), np.array(_colour(rng))
    return Image.fromarray((start + (end - start) * t[..., None]).astype(np.uint8))


def grey_gradient(rng: np.random.Generator) -> Image.Image:
    return colour_gradient(rng).convert("L")


def shapes(rng: np.random.Generator, grey: bool = False) -> Image.Image:
    w, h = _size(rng)
    image = Image.new("RGB", (w, h), _colour(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 15))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = [x0, y0, x0 + int(rng.integers(10, w)), y0 + int(rng.integers(10, h))]
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.rectangle(box, fill=_colour(rng))
        elif kind == 1:
            draw.ellipse(box, fill=_colour(rng), outline=_colour(rng), width=3)
        else:
            points = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(points, fill=_colour(rng))
    return image.convert("L") if grey else image


def text(rng: np.random.Generator) -> Image.Image:
    w, h = _size(rng)
    white = rng.random() < 0.6
    image = Image.new("RGB", (w, h), (255, 255, 255) if white else _colour(rng))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=int(rng.integers(12, 48)))
    for y in range(5, h, int(font.size * 1.4)):
        draw.text((5, y), " ".join(rng.choice(WORDS, 6)), fill=(0, 0, 0) if white else _colour(rng), font=font)
    return _maybe_grey(image, rng)


def noise(rng: np.random.Generator) -> Image.Image:
    w, h = _size(rng)
    channels = 3 if rng.random() < 0.5 else 1
    kind = rng.integers(0, 4)
    if kind == 0:
        array = rng.integers(0, 256, (h, w, channels))
    elif kind == 1:
        array = np.clip(rng.normal(128, rng.uniform(20, 80), (h, w, channels)), 0, 255)
    elif kind == 2:
        array = np.where(rng.random((h, w, channels)) < 0.5, 0, 255)
    else:  # a smooth random field: a few random values upsampled
        small = rng.integers(0, 256, (int(rng.integers(3, 20)), int(rng.integers(3, 20)), channels))
        return Image.fromarray(small.astype(np.uint8).squeeze(-1) if channels == 1 else small.astype(np.uint8)).resize(
            (w, h), Image.Resampling.BICUBIC
        )
    array = array.astype(np.uint8)
    return Image.fromarray(array[..., 0] if channels == 1 else array)


def cartoon(rng: np.random.Generator) -> Image.Image:
    w, h = _size(rng)
    image = Image.new("RGB", (w, h), _colour(rng))
    draw = ImageDraw.Draw(image)
    kind = rng.integers(0, 3)
    if kind == 0:  # smiley
        cx, cy, r = w / 2, h / 2, min(w, h) * 0.4
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 220, 0), outline=(0, 0, 0), width=4)
        for dx in (-0.35, 0.35):
            draw.ellipse([cx + dx * r - 8, cy - 0.3 * r - 8, cx + dx * r + 8, cy - 0.3 * r + 8], fill=(0, 0, 0))
        draw.arc([cx - 0.5 * r, cy - 0.3 * r, cx + 0.5 * r, cy + 0.5 * r], 20, 160, fill=(0, 0, 0), width=4)
    elif kind == 1:  # house, lawn and sun
        draw.rectangle([0, h * 0.7, w, h], fill=(40, 160, 40))
        draw.rectangle([w * 0.3, h * 0.4, w * 0.7, h * 0.75], fill=_colour(rng), outline=(0, 0, 0), width=3)
        draw.polygon([(w * 0.25, h * 0.4), (w * 0.5, h * 0.15), (w * 0.75, h * 0.4)], fill=(180, 30, 30))
        draw.ellipse([w * 0.8, h * 0.05, w * 0.95, h * 0.2], fill=(255, 230, 0))
    else:  # line drawing on white
        image = Image.new("RGB", (w, h), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(5, 20))):
            points = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(3)]
            draw.line(points, fill=(0, 0, 0), width=int(rng.integers(1, 5)))
    return _maybe_grey(image, rng, 0.3)


def fractal(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """1/f^beta noise in [0, 1] ("clouds"), beta random in [0.8, 1.6]."""
    frequency = np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2
    spectrum = (rng.normal(size=(h, w)) + 1j * rng.normal(size=(h, w))) / np.maximum(frequency, 1e-6) ** (
        rng.uniform(0.8, 1.6) / 2
    )
    field_ = np.real(np.fft.ifft2(spectrum))
    return (field_ - field_.min()) / (np.ptp(field_) + 1e-9)


def texture(rng: np.random.Generator) -> Image.Image:
    w, h = _size(rng)
    yy, xx = np.mgrid[0:h, 0:w] / 64.0
    kind = rng.integers(0, 5)
    if kind == 0:
        t = fractal(rng, h, w)
    elif kind == 1:  # wood
        cx, cy = rng.uniform(0, 4, 2)
        t = 0.5 + 0.5 * np.sin(8 * np.hypot(xx - cx, yy - cy) + 3 * fractal(rng, h, w))
    elif kind == 2:  # marble
        t = 0.5 + 0.5 * np.sin(6 * xx + 8 * fractal(rng, h, w))
    elif kind == 3:  # checkerboard
        period = int(rng.integers(8, 64))
        t = ((np.arange(h)[:, None] // period + np.arange(w)[None, :] // period) % 2).astype(float)
    else:  # stripes
        t = 0.5 + 0.5 * np.sin(2 * np.pi * xx * rng.uniform(0.5, 4))
    if rng.random() < 0.5:
        return Image.fromarray((t * 255).astype(np.uint8))
    cmap = colormaps[str(rng.choice(["viridis", "terrain", "copper", "magma", "YlOrBr", "gist_earth"]))]
    return Image.fromarray((cmap(t)[..., :3] * 255).astype(np.uint8))


def _unit(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    return (array - array.min()) / (np.ptp(array) + 1e-9)


def matplotlib_pictures() -> list[Image.Image]:
    """The pictures matplotlib ships: photo portrait, product photo, logo, 2 elevation maps, an MRI slice."""
    pictures = [
        Image.open(cbook.get_sample_data(name)).convert("RGB")
        for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")
    ]
    dem = _unit(cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"])
    topo = _unit(cbook.get_sample_data("topobathy.npz")["topo"])
    with cbook.get_sample_data("s1045.ima.gz") as handle:
        mri = _unit(np.frombuffer(handle.read(), np.uint16).reshape(256, 256))
    pictures += [Image.fromarray((a * 255).astype(np.uint8)) for a in (dem, topo, mri)]
    pictures.append(Image.fromarray((colormaps["terrain"](dem)[..., :3] * 255).astype(np.uint8)))
    return pictures


def picture_crop(rng: np.random.Generator, pictures: list[Image.Image]) -> Image.Image:
    picture = pictures[int(rng.integers(len(pictures)))]
    w, h = picture.size
    cw, ch = int(w * rng.uniform(0.6, 1)), int(h * rng.uniform(0.6, 1))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return _maybe_grey(picture.crop((x, y, x + cw, y + ch)), rng)


def generators() -> dict[str, Callable[[np.random.Generator], Image.Image]]:
    pictures = matplotlib_pictures()
    return {
        "colour gradient": colour_gradient,
        "grey gradient": grey_gradient,
        "colour shapes": shapes,
        "grey shapes": lambda rng: shapes(rng, grey=True),
        "text": text,
        "noise": noise,
        "cartoon / line drawing": cartoon,
        "texture": texture,
        "photo / map / MRI crop": lambda rng: picture_crop(rng, pictures),
    }


# --- measuring ----------------------------------------------------------------------------------------------------


class Tally:
    """Per group: images, rejected, which criteria fired."""

    def __init__(self) -> None:
        self.groups: dict[str, list] = collections.defaultdict(lambda: [0, 0, collections.Counter()])

    def add(self, groups: tuple[str, ...], found: dict[str, str]) -> None:
        for group in groups:
            entry = self.groups[group]
            entry[0] += 1
            entry[1] += bool(found)
            entry[2].update(found.keys())

    def rows(self, first: str | None = None) -> list[tuple[str, int, int, collections.Counter]]:
        names = sorted(self.groups, key=lambda g: (g != first, g))
        return [(name, *self.groups[name]) for name in names]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def print_table(title: str, rows: list[tuple[str, int, int, collections.Counter]]) -> None:
    print(f"\n{title}\n")
    print("| set | images | rejected | rate (95 % CI) | criteria that fired (count) |")
    print("|---|---:|---:|---:|---|")
    for name, total, rejected, reasons in rows:
        fired = ", ".join(f"{k} {v}" for k, v in reasons.most_common()) or "-"
        print(f"| {name} | {total} | {rejected} | {rate_with_interval(rejected, total)} | {fired} |")


def rate_with_interval(count: int, total: int) -> str:
    """"12.3% (9.0-16.5)": the share with its Wilson score 95 % interval."""
    if total == 0:
        return "-"
    interval = binomtest(count, total).proportion_ci(confidence_level=0.95, method="wilson")
    return f"{count / total:.1%} ({interval.low:.1%}-{interval.high:.1%})"


def split_metadata(root: Path) -> dict[str, dict[str, str]]:
    """file_name -> its metadata.csv row (label, patient_id, source), when the split has one."""
    table = root / "metadata.csv"
    if not table.is_file():
        return {}
    with table.open(newline="") as handle:
        return {row["file_name"]: row for row in csv.DictReader(handle)}


def cross_fitted_gate_refusal(scores: list[float], patients: list[str], quantile: float) -> float:
    """The gate's refusal rate on radiographs its threshold did not see: the threshold from one half of the
    patients (its `quantile` of their scores), applied to the other half, and the other way round."""
    scores_array = np.asarray(scores)
    half = np.array([int(hashlib.sha256(p.encode()).hexdigest()[:8], 16) % 2 for p in patients])
    refused = [np.mean(scores_array[half == 1 - h] < np.quantile(scores_array[half == h], quantile)) for h in (0, 1)]
    return float(np.mean(refused))


def measure_split(check: RadiographCheck, root: Path, args: MeasureArguments) -> tuple[list[Image.Image], list]:
    """(a): every radiograph of the split; returns them (8-bit grey, for (c)-(e)) and [images, rejected, _]."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images under {root}")
    metadata = split_metadata(root)
    tally, rejected, scores, patients, images = Tally(), [], [], [], []
    for path in files:
        upload = decode_upload(path)
        stats, found = check.all_failures(upload)
        row = metadata.get(path.relative_to(root).as_posix(), {})
        groups = ("all", f"class {path.parent.name}") + ((f"source {row['source']}",) if "source" in row else ())
        tally.add(groups, found)
        if found:
            rejected.append((path.relative_to(root), list(found)))
        if stats.radiograph_score is not None:
            scores.append(stats.radiograph_score)
            patients.append(row.get("patient_id", path.name))
        images.append(upload.grey)
    print_table(f"(a) real radiographs: {root} (should all pass)", tally.rows("all"))
    for name, reasons in rejected[: args.show_rejected]:
        print(f"  rejected: {name} ({', '.join(reasons)})")
    if scores:
        quantile = check.gate.provenance().get("calibration", {}).get("refuse_quantile", 0.005)
        print(f"  gate alone, cross-fitted over two patient halves (threshold quantile {quantile}): refuses "
              f"{cross_fitted_gate_refusal(scores, patients, quantile):.2%} of radiographs it was not calibrated on")
    real = tally.groups["all"]
    return images, real


def measure_kinds(check: RadiographCheck, title: str, examples) -> tuple[int, int]:
    """(total, rejected) over (kind, image) examples; prints the table by kind."""
    tally = Tally()
    for kind, image in examples:
        tally.add((kind, "all"), check.all_failures(decode_upload(png_bytes(image)))[1])
    print_table(title, [row for row in tally.rows() if row[0] != "all"] + [("**all**", *tally.groups["all"])])
    return tally.groups["all"][0], tally.groups["all"][1]


def from_radiographs(kinds: dict, images: list[Image.Image], per_kind: int, seed: int):
    rng = np.random.default_rng(seed)
    for kind, make in kinds.items():
        for index in rng.choice(len(images), size=min(per_kind, len(images)), replace=False):
            yield kind, make(rng, images[int(index)])


def generated(per_kind: int, seed: int):
    rng = np.random.default_rng(seed)
    for kind, make in generators().items():
        for _ in range(per_kind):
            yield kind, make(rng)


def main() -> None:
    (args,) = HfArgumentParser(MeasureArguments).parse_args_into_dataclasses()
    check = RadiographCheck()
    images, real = measure_split(check, Path(args.dataset) / args.split, args)
    summary = [f"real radiographs rejected {real[1]}/{real[0]} ({real[1] / real[0]:.2%})"]
    total, refused = measure_kinds(check, f"(b) generated non-radiographs, seed {args.seed} (should all be rejected)",
                                   generated(args.per_kind, args.seed))
    summary.append(f"non-radiographs rejected {refused}/{total} ({refused / total:.1%})")
    total, refused = measure_kinds(check, f"(c) design outliers from {args.split} radiographs (should be rejected)",
                                   from_radiographs(DESIGN_OUTLIERS, images, args.per_kind, args.seed + 1))
    summary.append(f"design outliers rejected {refused}/{total} ({refused / total:.1%})")
    total, refused = measure_kinds(check, f"(d) benign variants of {args.split} radiographs (should pass)",
                                   from_radiographs({"benign variant": benign_variant}, images, 5 * args.per_kind,
                                                    args.seed + 2))
    summary.append(f"benign variants rejected {refused}/{total} ({refused / total:.1%})")
    if args.heldout:
        from heldout_outliers import heldout_sets

        outliers, benign = heldout_sets(images, args.per_kind, args.seed + 3, args.heldout_round)
        total, refused = measure_kinds(
            check, f"(e) HELD-OUT outliers, round {args.heldout_round}: kinds not used to design the rule", outliers
        )
        summary.append(f"held-out outliers rejected {refused}/{total} ({refused / total:.1%})")
        total, refused = measure_kinds(check, "(e') held-out benign variants (should pass)",
                                       from_radiographs(benign, images, args.per_kind, args.seed + 4))
        summary.append(f"held-out benign variants rejected {refused}/{total} ({refused / total:.1%})")
    print("\nSUMMARY: " + "; ".join(summary))
    print(f"gate: {check.gate.provenance() if check.gate is not None else 'off'}")


if __name__ == "__main__":
    main()

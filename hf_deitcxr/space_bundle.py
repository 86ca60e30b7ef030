"""Stage the Space folder for `hf-deitcxr push --repo_type space`: a copy that runs on the Hub exactly as uploaded.

The Gradio SDK image installs `requirements.txt` before it copies the repository in (the file is mounted on its own
for `pip install -r`), so the Space cannot `pip install` a local path or wheel of this package, and a `git+` line ties
it to a code host. Instead the staged copy carries the package source (`hf_deitcxr/`, *.py plus the data files the
serving path opens) next to `app.py`: the Space runs `python app.py` in its folder, so `import hf_deitcxr` finds the
vendored copy first. `requirements.txt` then pins only third-party packages.

The example ids of the Space card (`OWNER/deitcxr-space`, ...) are filled in with the real repo ids, and the stage
is refused while any `OWNER` placeholder is left in a file that would be uploaded. The user's folder is never touched.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "hf_deitcxr"
# Non-Python files of the package the Space reads at run time (a subset of pyproject's package-data: the bundled
# training sample is not needed to serve).
PACKAGE_DATA = ("model_card_template.md", "serving/*.npz", "serving/*.safetensors")
IGNORED = ("__pycache__", "*.pyc", ".DS_Store", ".gradio", "flagged", ".ipynb_checkpoints")
# `OWNER` as a word is a placeholder; `OWNER/NAME` is the notation of a Hub id in help texts, not one to fill in.
PLACEHOLDER = re.compile(r"\bOWNER\b(?!/NAME\b)")
# Example ids in the Space folder and what replaces each (the attribute of SpaceIds).
EXAMPLE_IDS = {"deitcxr-space": "space_id", "deitcxr-tiny-distilled": "model_id", "deitcxr-tiny-teacher": "teacher_id"}
TEXT_SUFFIXES = (".md", ".txt", ".py", ".toml", ".cfg", ".yaml", ".yml", ".json", ".csv", ".html", ".css", ".js")


class PlaceholderLeft(ValueError):
    """A file to upload still holds an `OWNER` placeholder; the message names each file and line."""


@dataclass(frozen=True)
class SpaceIds:
    space_id: str
    model_id: str | None = None
    teacher_id: str | None = None


def stage_space(space_folder: Path, staging: Path, ids: SpaceIds, package_dir: Path | None = None) -> Path:
    """Copy `space_folder` to `staging` (which must not exist or be empty), vendor the package and fill the ids in.

    `package_dir`: the package source to vendor (default: the imported hf_deitcxr, checkout or installed copy).
    Returns `staging`. Raises PlaceholderLeft if an `OWNER` placeholder would be uploaded.
    """
    space_folder, staging = Path(space_folder), Path(staging)
    if not (space_folder / "app.py").is_file():
        raise FileNotFoundError(f"{space_folder} has no app.py: not a Gradio Space folder")
    if staging.exists() and any(staging.iterdir()):
        raise FileExistsError(f"staging folder {staging} is not empty")
    if (space_folder / PACKAGE).exists():
        raise FileExistsError(f"{space_folder / PACKAGE} exists: the push vendors the package there itself")
    shutil.copytree(space_folder, staging, ignore=shutil.ignore_patterns(*IGNORED), dirs_exist_ok=True)
    vendor_package(staging / PACKAGE, package_dir or installed_package_dir())
    fill_example_ids(staging, ids)
    leftovers = find_placeholders(staging)
    if leftovers:
        raise PlaceholderLeft("these files would be uploaded with an `OWNER` placeholder; pass the repo id it "
                              "stands for (--space_model_id / --space_teacher_id) or edit the file:\n  "
                              + "\n  ".join(leftovers))
    return staging


def installed_package_dir() -> Path:
    import hf_deitcxr

    return Path(hf_deitcxr.__file__).resolve().parent


def package_files(package_dir: Path) -> list[str]:
    """Relative posix paths of the package's Python sources and serving data files (no caches)."""
    names = {p.relative_to(package_dir).as_posix() for p in package_dir.rglob("*.py")}
    for pattern in PACKAGE_DATA:
        names |= {p.relative_to(package_dir).as_posix() for p in package_dir.glob(pattern)}
    return sorted(name for name in names if "__pycache__" not in name.split("/"))


def vendor_package(target: Path, package_dir: Path) -> list[str]:
    """Copy the package's files to `target`; returns what was copied."""
    if not (package_dir / "__init__.py").is_file():
        raise FileNotFoundError(f"{package_dir} is not the {PACKAGE} package (no __init__.py)")
    names = package_files(package_dir)
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package_dir / name, target / name)
    return names


def fill_example_ids(folder: Path, ids: SpaceIds) -> None:
    """Replace `OWNER/<example>` with the real id in the Space's own text files (not the vendored package)."""
    replacements = {f"OWNER/{example}": getattr(ids, attribute) for example, attribute in EXAMPLE_IDS.items()}
    for path in space_text_files(folder):
        text = path.read_text(encoding="utf-8")
        filled = text
        for example, repo_id in replacements.items():
            if repo_id:
                filled = filled.replace(example, repo_id)
        if filled != text:
            path.write_text(filled, encoding="utf-8")


def space_text_files(folder: Path) -> list[Path]:
    """Text files of the staged folder, less the vendored package's Python sources (library code whose docs may
    name `OWNER` in the Hub id notation; the package's other text files are included)."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).parts
        if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES:
            continue
        if relative[0] == PACKAGE and path.suffix == ".py":
            continue
        found.append(path)
    return found


def find_placeholders(folder: Path) -> list[str]:
    """`file:line: text` of every `OWNER` placeholder left in the folder's text files."""
    found = []
    for path in space_text_files(folder):
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            if PLACEHOLDER.search(line):
                found.append(f"{path.relative_to(folder).as_posix()}:{number}: {line.strip()[:100]}")
    return found


__all__ = ["PlaceholderLeft", "SpaceIds", "find_placeholders", "package_files", "stage_space", "vendor_package"]

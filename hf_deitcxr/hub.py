"""`hf-deitcxr push` / scripts/push_to_hub.py: publish a trained model folder (or the Space folder) to the Hub.

huggingface_hub does the work (`create_repo`, `create_branch`, `upload_folder`); this module decides *what* may be
published and refuses the rest before anything leaves the machine:
- a model folder needs `config.json` and safetensors weights, and must be self-contained for
  `trust_remote_code=True`: every `auto_map` entry (and each relative import of that code) is a file in the folder;
- training leftovers are skipped (`checkpoint-*/`, `runs/`, `training_args.bin`, caches);
- anything that looks like a secret (`.env`, token/credential/key files, a Hub token or private key inside a file,
  the token you are logged in with) makes the push fail, naming the file;
- pickle files other than the skipped `training_args.bin` are refused (they run code when loaded).
A Space folder is pushed as a staged copy (space_bundle.py): the package source vendored next to `app.py`, the
example repo ids of its card filled in, refused while an `OWNER` placeholder is left.
The token is never an argument: huggingface_hub reads it from `hf auth login` or `HF_TOKEN`, and this module never
prints, logs or writes it.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_TYPES = ("model", "space")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
# Skipped silently (listed in the plan): training state and caches, never part of a published model.
SKIPPED_DIRS = ("checkpoint-*", "runs", "__pycache__", ".ipynb_checkpoints", ".gradio", "flagged", ".git", ".cache")
SKIPPED_FILES = ("training_args.bin", "*.pyc", ".DS_Store", "*.lock")
# A push containing any of these is refused: names of secret-holding files (matched case-insensitively)...
SECRET_NAMES = (".env", ".env.*", "*.env", "token", "token.txt", "*.token", "*_token", "*_token.txt", "stored_tokens",
                ".netrc", "_netrc", ".git-credentials", "credentials", "credentials.json", "*.pem", "*.key", "*.p12",
                "*.pfx", "id_rsa*", "id_ed25519*", "id_ecdsa*", ".pypirc", ".npmrc", "secrets.toml", "secrets.json")
SECRET_DIRS = (".huggingface", ".ssh", ".aws", ".config")
PICKLE_FILES = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt")
# ...and content: a Hub user access token (hf_ + 34 letters/digits) or a PEM private key.
SECRET_CONTENT = re.compile(rb"hf_[A-Za-z0-9]{34}|-----BEGIN [A-Z ]*PRIVATE KEY-----")
SCAN_LIMIT = 10 * 2**20  # text-like files above this size are only checked for the logged-in token


class PushRefused(ValueError):
    """The folder must not be published as it is; the message says why and what to do."""


@dataclass
class PushArguments:
    folder: str = field(metadata={"help": "Trained model folder (from `hf-deitcxr train`), or the Space folder "
                                          "(`space/`) with --repo_type space"})
    repo_id: str = field(metadata={"help": "Target repository, `namespace/name`"})
    repo_type: str = field(default="model", metadata={"help": "model, or space to push a Gradio Space",
                                                      "choices": list(REPO_TYPES)})
    private: bool = field(default=False, metadata={"help": "Create the repository private (no effect on an existing "
                                                           "repository's visibility)"})
    revision: str | None = field(default=None, metadata={"help": "Branch to commit to; created from main if missing "
                                                                 "(default: main)"})
    commit_message: str | None = field(default=None, metadata={"help": "Commit message"})
    dry_run: bool = field(default=False, metadata={"help": "List exactly the files that would be uploaded and upload "
                                                           "nothing"})
    model_card: bool = field(default=True, metadata={"help": "Write/refresh README.md (the model card) from the "
                                                             "folder's config, metrics and training files first"})
    teacher_repo_id: str | None = field(default=None, metadata={"help": "Hub id of the teacher, named in the card"})
    space_model_id: str | None = field(default=None, metadata={"help": "With --repo_type space: set the Space's "
                                                                        "MODEL_ID variable to this model repo"})
    space_teacher_id: str | None = field(default=None, metadata={"help": "With --repo_type space: set the Space's "
                                                                          "TEACHER_ID variable to this model repo"})
    stage_dir: str | None = field(default=None, metadata={"help": "With --repo_type space: build the staged copy "
                                                                   "that is uploaded (package vendored, ids filled in) "
                                                                   "in this new folder and keep it (default: a "
                                                                   "temporary folder)"})

    def __post_init__(self) -> None:
        if self.repo_type not in REPO_TYPES:
            raise ValueError(f"repo_type must be one of {REPO_TYPES}, got {self.repo_type!r}")
        if self.repo_id.count("/") != 1 or not all(self.repo_id.split("/")):
            raise ValueError(f"repo_id must be `namespace/name`, got {self.repo_id!r}")
        for name in ("space_model_id", "space_teacher_id", "stage_dir"):
            if getattr(self, name) and self.repo_type != "space":
                raise ValueError(f"--{name} only applies with --repo_type space")


@dataclass
class PushPlan:
    folder: Path
    files: list[str]  # posix paths relative to `folder`: exactly what upload_folder will send
    skipped: list[str]
    warnings: list[str]
    regenerated: list[str]  # files (re)written just before the upload (the model card)

    def describe(self, args: PushArguments) -> str:
        visibility = "private" if args.private else "public (if new)"
        lines = [f"{args.repo_type} repo {args.repo_id} ({visibility}), branch {args.revision or 'main'}, "
                 f"message {commit_message(args)!r}", f"files to upload ({len(self.files)}):"]
        for name in self.files:
            note = " (regenerated)" if name in self.regenerated else ""
            size = (self.folder / name).stat().st_size if (self.folder / name).exists() else 0
            lines.append(f"  + {name}{note}  [{size:,} bytes]")
        lines += [f"skipped: {name}" for name in self.skipped] + [f"warning: {text}" for text in self.warnings]
        return "\n".join(lines)


def push_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `hf-deitcxr push` and scripts/push_to_hub.py; returns the exit status."""
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    refuse_token_arguments(argv)
    if argv and not argv[0].startswith("-"):  # `hf-deitcxr push space ...`: the folder as first word
        argv = ["--folder", *argv]
    (args,) = HfArgumentParser(PushArguments).parse_args_into_dataclasses(args=argv)
    from huggingface_hub.errors import HfHubHTTPError

    try:  # the HTTP client of huggingface_hub 2.x; 1.x used httpx
        from httpx2 import HTTPError as TransportError
    except ImportError:
        from httpx import HTTPError as TransportError

    try:
        result = push(args)
    except PushRefused as refusal:
        print(f"push refused: {refusal}", file=sys.stderr)
        return 2
    except (HfHubHTTPError, TransportError) as error:  # the Hub said no, or could not be reached
        print(f"push failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if args.dry_run:
        print("dry run: nothing was uploaded")
    else:
        print(f"pushed: {result}")
    return 0


def refuse_token_arguments(argv: Sequence[str]) -> None:
    # argparse would echo an unknown `--token hf_...` back in its error message, i.e. into logs: stop it first.
    for item in argv:
        if item.split("=", 1)[0].lstrip("-").replace("-", "_") in ("token", "hub_token", "use_auth_token"):
            print("push refused: a token is never passed on the command line; log in with `hf auth login` or set "
                  "the HF_TOKEN environment variable", file=sys.stderr)
            raise SystemExit(2)


def push(args: PushArguments, endpoint: str | None = None):
    """Check and publish `args.folder` (a Space folder: its staged copy); with `dry_run`, only return the plan.
    `endpoint`: a Hub other than the default (HF_ENDPOINT) one, e.g. a test server."""
    if args.repo_type != "space":
        return _push_folder(args, Path(args.folder), endpoint)
    with staged_space(args) as staged:
        return _push_folder(args, staged, endpoint)


@contextmanager
def staged_space(args: PushArguments) -> Iterator[Path]:
    """The Space folder as it is uploaded: in `args.stage_dir` (kept) or a temporary folder (removed after)."""
    from .space_bundle import PlaceholderLeft, SpaceIds, stage_space

    ids = SpaceIds(args.repo_id, args.space_model_id, args.space_teacher_id)
    with tempfile.TemporaryDirectory(prefix="hf_deitcxr_space_") as temporary:
        try:
            staged = stage_space(Path(args.folder), Path(args.stage_dir or temporary), ids)
        except (PlaceholderLeft, FileNotFoundError, FileExistsError) as problem:
            raise PushRefused(str(problem)) from problem
        yield staged


def _push_folder(args: PushArguments, folder: Path, endpoint: str | None):
    from huggingface_hub import HfApi, constants, get_token

    plan = plan_push(folder, args.repo_type, write_card=args.model_card)
    print(plan.describe(args))
    if args.dry_run:
        if plan.regenerated:  # render the card in memory: a broken metrics.json shows up now, not at push time
            from .model_card import build_model_card

            build_model_card(folder, repo_id=args.repo_id, teacher_repo_id=args.teacher_repo_id)
        return plan
    if constants.is_offline_mode():
        raise PushRefused("HF_HUB_OFFLINE is set: unset it to push")
    if get_token() is None:
        raise PushRefused("not logged in: run `hf auth login` or set the HF_TOKEN environment variable")
    if "README.md" in plan.regenerated:
        from .model_card import write_model_card

        write_model_card(folder, repo_id=args.repo_id, teacher_repo_id=args.teacher_repo_id)
        # The card is a new file: check it like the rest, and make sure the folder still matches the plan.
        final = plan_push(folder, args.repo_type, write_card=False)
        if final.files != plan.files:
            changed = sorted(set(final.files) ^ set(plan.files))
            raise PushRefused(f"the folder changed while preparing the push: {changed}")

    api = HfApi(endpoint=endpoint)
    repo_url = api.create_repo(args.repo_id, repo_type=args.repo_type, private=args.private, exist_ok=True,
                               space_sdk="gradio" if args.repo_type == "space" else None)
    if args.revision and args.revision != constants.DEFAULT_REVISION:
        api.create_branch(args.repo_id, branch=args.revision, repo_type=args.repo_type, exist_ok=True)
    if args.space_model_id:
        api.add_space_variable(args.repo_id, "MODEL_ID", args.space_model_id,
                               description="Model repo the demo serves")
    if args.space_teacher_id:
        api.add_space_variable(args.repo_id, "TEACHER_ID", args.space_teacher_id,
                               description="Teacher shown beside the student")
    commit = api.upload_folder(
        repo_id=args.repo_id, folder_path=folder, repo_type=args.repo_type, revision=args.revision,
        commit_message=commit_message(args),
        # exactly the planned files: escape glob characters so each pattern matches one path only
        allow_patterns=[glob.escape(name) for name in plan.files],
    )
    return f"{repo_url} (commit {commit.oid}: {commit.commit_url})"


def commit_message(args: PushArguments) -> str:
    return args.commit_message or f"Upload {Path(args.folder).resolve().name} with hf-deitcxr push"


def plan_push(folder: Path, repo_type: str = "model", write_card: bool = True) -> PushPlan:
    """The files a push of `folder` would upload, or `PushRefused` saying why it must not be pushed."""
    if not folder.is_dir():
        raise PushRefused(f"{folder} is not a folder")
    files, skipped = list_files(folder)
    regenerated = []
    if repo_type == "model" and write_card:
        regenerated = ["README.md"]
        files = sorted(set(files) | {"README.md"})
    check_secrets(folder, [name for name in files if name not in regenerated])
    warnings = check_model_folder(folder, files) if repo_type == "model" else check_space_folder(folder, files)
    return PushPlan(folder=folder, files=files, skipped=skipped, warnings=warnings, regenerated=regenerated)


def list_files(folder: Path) -> tuple[list[str], list[str]]:
    """(files to upload, skipped paths), both relative posix paths; enumerated as `upload_folder` does."""
    files, skipped = [], set()
    for path in sorted(folder.glob("**/*")):
        if not path.is_file() and not path.is_symlink():
            continue
        relative = path.relative_to(folder).as_posix()
        parts = relative.split("/")
        skipped_dir = next((p for p in parts[:-1] if any(fnmatch.fnmatch(p, d) for d in SKIPPED_DIRS)), None)
        if skipped_dir:
            skipped.add("/".join(parts[: parts.index(skipped_dir) + 1]) + "/")
        elif any(fnmatch.fnmatch(parts[-1], pattern) for pattern in SKIPPED_FILES):
            skipped.add(relative)
        else:
            files.append(relative)
    return files, sorted(skipped)


def check_secrets(folder: Path, files: list[str]) -> None:
    from huggingface_hub import get_token

    token = (get_token() or "").encode()
    problems = []
    for name in files:
        path = folder / name
        parts = [part.lower() for part in name.split("/")]
        if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
            problems.append(f"{name} (a link to a file outside the folder)")
        elif any(fnmatch.fnmatch(parts[-1], p) for p in SECRET_NAMES) or set(parts[:-1]) & set(SECRET_DIRS):
            problems.append(f"{name} (file name of a secret/credential file)")
        elif any(fnmatch.fnmatch(parts[-1], pattern) for pattern in PICKLE_FILES):
            problems.append(f"{name} (pickle file: runs code when loaded; save weights as safetensors)")
        elif _contains_secret(path, token):
            problems.append(f"{name} (contains what looks like an access token or private key)")
    if problems:
        raise PushRefused("files that look like secrets or unsafe content; remove them from the folder first:\n  "
                          + "\n  ".join(problems))


def _contains_secret(path: Path, token: bytes) -> bool:
    """The logged-in token anywhere in the file (read in overlapping blocks); token/key patterns in small files."""
    block, overlap = 8 * 2**20, max(len(token), 64)
    small = path.stat().st_size <= SCAN_LIMIT and path.suffix != ".safetensors"
    tail = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            window = tail + chunk
            if (token and token in window) or (small and SECRET_CONTENT.search(window)):
                return True
            tail = window[-overlap:]
    return False


def check_model_folder(folder: Path, files: list[str]) -> list[str]:
    """Refuse a folder Hub users could not load; return warnings for what merely degrades it."""
    if "config.json" not in files:
        raise PushRefused(f"{folder} has no config.json: not a saved model folder (save it with save_pretrained)")
    if not any(name in files for name in WEIGHT_FILES):
        raise PushRefused(f"{folder} has no safetensors weights ({' or '.join(WEIGHT_FILES)})")
    config = _load_json(folder / "config.json")
    warnings = check_remote_code(folder, files, config)
    if "preprocessor_config.json" not in files:
        warnings.append("no preprocessor_config.json: `pipeline` and AutoImageProcessor will not load this repo")
    teacher = config.get("teacher_name_or_path")
    if teacher and Path(teacher).is_absolute():
        warnings.append(f"config.json names the teacher by a local path ({Path(teacher).name}/...): pass "
                        "--teacher_repo_id so the card points to a published teacher")
    return warnings


def check_remote_code(folder: Path, files: list[str], config: dict) -> list[str]:
    """Every `auto_map` class of the folder's configs resolves to a code file in it, imports included."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if not config.get("auto_map") and config.get("model_type") not in CONFIG_MAPPING_NAMES:
        raise PushRefused(f"config.json has model_type {config.get('model_type')!r}, unknown to transformers, and no "
                          "auto_map: re-save the model with save_pretrained after `import hf_deitcxr`")
    missing = []
    for json_name in (name for name in files if "/" not in name and name.endswith(".json")):
        auto_map = _load_json(folder / json_name).get("auto_map")
        if not isinstance(auto_map, dict):
            continue
        for auto_class, references in auto_map.items():
            for reference in references if isinstance(references, list) else [references]:
                if reference is None:
                    continue
                if "--" in reference:
                    missing.append(f"{json_name}: {auto_class} -> {reference} (code in another repository)")
                    continue
                module = reference.rsplit(".", 1)[0]
                missing += [f"{json_name}: {auto_class} -> {reference} needs {code}"
                            for code in _code_files(folder, module) if code not in files]
    if missing:
        raise PushRefused("not self-contained for trust_remote_code:\n  " + "\n  ".join(sorted(set(missing))))
    return []


def _code_files(folder: Path, module: str) -> list[str]:
    """`module`.py and, recursively, the files it imports relatively (as transformers resolves them)."""
    from transformers.dynamic_module_utils import get_relative_imports

    needed, queue = [], [f"{module}.py"]
    while queue:
        name = queue.pop()
        if name in needed:
            continue
        needed.append(name)
        if (folder / name).is_file():
            queue += [f"{imported}.py" for imported in get_relative_imports(folder / name)]
    return needed


def check_space_folder(folder: Path, files: list[str]) -> list[str]:
    from huggingface_hub import metadata_load

    if "app.py" not in files:
        raise PushRefused(f"{folder} has no app.py: not a Gradio Space folder")
    warnings = []
    if "requirements.txt" not in files:
        warnings.append("no requirements.txt: the Space will not install the packages the app imports")
    if "README.md" in files:
        metadata = metadata_load(folder / "README.md") or {}
        if metadata.get("sdk") != "gradio":
            raise PushRefused("space README.md has no `sdk: gradio` metadata: the Hub would not run the app")
    else:
        warnings.append("no README.md: the Hub's default Space README (sdk gradio) stays in place")
    return warnings


def _load_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PushRefused(f"{path.name} is unreadable: {error}") from error
    if not isinstance(value, dict):
        raise PushRefused(f"{path.name} is not a JSON object")
    return value

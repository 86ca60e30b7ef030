"""A recording stand-in for the Hugging Face Hub and its Xet storage (CAS), on loopback, for the push tests.

It implements the endpoints huggingface_hub 2.4 calls for `create_repo`, `create_branch`, `add_space_variable` and
`upload_folder` (README YAML validation, preupload, the NDJSON commit) and, for the files it marks `uploadMode: lfs`
(safetensors, PNG), both large-file paths: Xet (the write-token route plus the CAS routes hf_xet uses: global-dedup
query, xorb upload, shard upload v1/v2; xet-core spec/api.md) and classic git-LFS (batch API + basic PUT, used when
hf_xet is absent or HF_HUB_DISABLE_XET is set). It checks the bearer token on Hub routes and records every request,
so tests can assert what reached "the Hub". It does not parse xorbs/shards (it records their sizes), checks LFS
objects against their sha256, and serves no downloads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

FAKE_TOKEN = "hf_FakeTokenForTestsOnly0123456789abcdef"


def log_in_with_fake_token(monkeypatch, home: Path) -> None:
    """The fake token in HF_TOKEN (the standard place), a private token path under `home`, and online mode."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "hf_home" / "token"))


XET_ACCESS_TOKEN = "xet-write-token-for-tests"
LFS_SUFFIXES = (".safetensors", ".png", ".jpg", ".bin")  # like the Hub's default .gitattributes


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes


@dataclass
class Commit:
    repo: str
    revision: str
    summary: str
    files: dict[str, bytes] = field(default_factory=dict)  # regular files, decoded
    lfs_files: dict[str, dict] = field(default_factory=dict)  # path -> {"oid", "size"}


class FakeHub:
    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[Request] = []
        self.repos: dict[str, dict] = {}  # "type/namespace/name" -> create payload
        self.branches: list[tuple[str, str]] = []
        self.commits: list[Commit] = []
        self.variables: list[tuple[str, dict]] = []
        self.xorb_bytes = 0
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, from the classic LFS path
        self.shards = 0
        self.unexpected: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- routes -------------------------------------------------------------------------------------------------
    def route(self, request: Request) -> tuple[int, dict, dict | bytes | None]:
        """(status, extra headers, JSON body or raw bytes)."""
        path = request.path
        if path.startswith(("/v1/", "/v2/")):
            return self._cas(request)
        if path.startswith("/lfs-storage/") and request.method == "PUT":  # a pre-signed storage URL: no Hub token
            return self._store_lfs_object(path.rsplit("/", 1)[1], request.body)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, {"error": "Invalid credentials"}
        if path.endswith(".git/info/lfs/objects/batch"):
            return self._lfs_batch(json.loads(request.body))
        if path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(request.body))
        if path == "/api/repos/create":
            payload = json.loads(request.body)
            repo_type = payload.get("type") or "model"
            key = f"{repo_type}/{payload.get('organization')}/{payload['name']}"
            if key in self.repos:
                return 409, {}, {"error": "You already created this repo"}
            self.repos[key] = payload
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            return 200, {}, {"url": f"{self.url}/{prefix}{payload.get('organization')}/{payload['name']}"}
        match = re.fullmatch(r"/api/(models|spaces|datasets)/([^/]+/[^/]+)/(\w[\w-]*)(?:/(.*))?", path)
        if not match:
            return self._unexpected(request)
        kind, repo, action, rest = match.groups()
        repo_key = f"{kind[:-1]}/{repo}"
        if repo_key not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}
        if action == "branch" and request.method == "POST":
            self.branches.append((repo_key, unquote(rest)))
            return 200, {}, {}
        if action == "variables" and request.method == "POST":
            payload = json.loads(request.body)
            self.variables.append((repo_key, payload))
            return 200, {}, {payload["key"]: {"value": payload["value"], "updatedAt": "2026-01-01T00:00:00.000Z"}}
        if action == "preupload":
            files = json.loads(request.body)["files"]
            return 200, {}, {"files": [{"path": f["path"], "uploadMode": _upload_mode(f["path"]),
                                        "shouldIgnore": False} for f in files]}
        if action == "xet-write-token":
            expiry = int(time.time()) + 3600
            cas = {"X-Xet-Cas-Url": self.url, "X-Xet-Access-Token": XET_ACCESS_TOKEN,
                   "X-Xet-Token-Expiration": str(expiry)}
            return 200, cas, {"casUrl": self.url, "accessToken": XET_ACCESS_TOKEN, "exp": expiry}
        if action == "commit" and request.method == "POST":
            return self._commit(repo_key, unquote(rest), request.body)
        return self._unexpected(request)

    def _validate_yaml(self, payload: dict) -> tuple[int, dict, dict]:
        content = payload["content"]
        if not content.startswith("---\n"):
            return 200, {}, {"warnings": [{"message": "empty or missing yaml metadata"}]}
        try:
            yaml.safe_load(content.split("---\n")[1])
        except yaml.YAMLError as error:
            return 400, {}, {"errors": [{"message": str(error)}]}
        return 200, {}, {}

    def _commit(self, repo_key: str, revision: str, body: bytes) -> tuple[int, dict, dict]:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = lines[0]
        if header["key"] != "header":
            return 400, {}, {"error": "first line must be the header"}
        commit = Commit(repo=repo_key, revision=revision, summary=header["value"]["summary"])
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                commit.files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                commit.lfs_files[value["path"]] = {"oid": value["oid"], "size": value["size"]}
            else:
                return 400, {}, {"error": f"unsupported commit operation {line['key']}"}
        self.commits.append(commit)
        oid = f"{len(self.commits):040x}"
        kind, repo = repo_key.split("/", 1)
        prefix = "" if kind == "model" else f"{kind}s/"
        return 200, {}, {"success": True, "commitOid": oid, "commitUrl": f"{self.url}/{prefix}{repo}/commit/{oid}"}

    def _lfs_batch(self, payload: dict) -> tuple[int, dict, dict]:
        """Classic git-LFS batch API (used when hf_xet is absent or disabled): one basic PUT per object."""
        objects = [{"oid": o["oid"], "size": o["size"],
                    "actions": {"upload": {"href": f"{self.url}/lfs-storage/{o['oid']}"}}}
                   for o in payload["objects"] if o["oid"] not in self.lfs_objects]
        return 200, {}, {"transfer": "basic", "objects": objects}

    def _store_lfs_object(self, oid: str, body: bytes) -> tuple[int, dict, dict | None]:
        if hashlib.sha256(body).hexdigest() != oid:
            return 400, {}, {"error": "sha256 mismatch"}
        self.lfs_objects[oid] = body
        return 200, {}, None

    def _cas(self, request: Request) -> tuple[int, dict, dict | bytes | None]:
        if request.headers.get("authorization") != f"Bearer {XET_ACCESS_TOKEN}":
            return 401, {}, {"error": "bad xet token"}
        if request.method == "GET" and request.path.startswith("/v1/chunks/"):
            return 404, {}, None  # no global deduplication: every chunk is new
        if request.method == "POST" and request.path.startswith(("/v1/xorbs/", "/v2/xorbs/")):
            self.xorb_bytes += len(request.body)
            return 200, {}, {"was_inserted": True}
        if request.method == "POST" and request.path.startswith("/v1/xorb-grants/"):
            return 404, {}, None  # no pre-signed upload grants here: hf_xet falls back to the direct xorb upload
        if request.method == "POST" and request.path == "/v1/shards":
            self.shards += 1
            return 200, {}, {"result": 1}
        if request.method == "POST" and request.path == "/v2/shards":  # NDJSON progress frames, then a result
            self.shards += 1
            return 200, {}, b'{"type":"validating","verified":1,"total":1}\n{"type":"result"}\n'
        return self._unexpected(request)

    def _unexpected(self, request: Request) -> tuple[int, dict, dict]:
        self.unexpected.append(f"{request.method} {request.path}")
        return 404, {}, {"error": f"fake hub has no route {request.method} {request.path}"}

    # ---- helpers for assertions ---------------------------------------------------------------------------------
    def committed_paths(self) -> set[str]:
        return {path for commit in self.commits for path in [*commit.files, *commit.lfs_files]}

    def raw_traffic(self) -> bytes:
        return b"\n".join(r.body + json.dumps(r.headers).encode() for r in self.requests)


def _upload_mode(path: str) -> str:
    return "lfs" if path.endswith(LFS_SUFFIXES) else "regular"


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _serve(self) -> None:
            split = urlsplit(self.path)
            request = Request(self.command, split.path, parse_qs(split.query),
                              {k.lower(): v for k, v in self.headers.items()}, self._body())
            hub.requests.append(request)
            status, headers, payload = hub.route(request)
            data = payload if isinstance(payload, bytes) else b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", ""):
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler

"""A tiny in-memory Hugging Face Hub on 127.0.0.1, just enough for ``huggingface_hub`` 2.4 to push and pull.

Endpoints (the ones ``HfApi.create_repo``, ``HfApi.upload_folder`` and ``hf_hub_download`` call):

- ``POST /api/repos/create``                                  -> ``{"url": ...}`` (409 with the url if it exists)
- ``POST /api/validate-yaml``                                  -> README front matter must be a YAML mapping
- ``POST /api/models/{repo_id}/preupload/{revision}``          -> every file in ``"regular"`` mode (no LFS, no xet)
- ``POST /api/models/{repo_id}/commit/{revision}``             <- NDJSON: a header line, then base64 file lines
- ``HEAD|GET /{repo_id}/resolve/{revision}/{filename}``        -> ``X-Repo-Commit``, ``ETag``, ``Content-Length``

Errors carry the ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) that
``huggingface_hub`` maps to its exception types. Every request is recorded in :attr:`FakeHub.requests`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

MAIN = "main"
REQUEST_TIMEOUT_S = 10.0
"""Socket timeout of one connection: a stuck client cannot hold a handler thread longer than this."""


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """Commit id -> the full file tree (path -> content) at that commit."""
    branches: dict[str, str] = field(default_factory=dict)
    """Branch name -> commit id."""

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class FakeHub:
    """An in-memory Hub served over loopback HTTP from a background thread.

    Use as a context manager; :attr:`url` is the endpoint to give ``huggingface_hub``.
    """

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection
    def files(self, repo_id: str, revision: str = MAIN) -> dict[str, bytes]:
        """The file tree of ``repo_id`` at ``revision`` (a branch or a commit id)."""
        with self._lock:
            repo = self.repos[repo_id]
            return dict(repo.commits[repo.resolve(revision)])

    def head(self, repo_id: str, branch: str = MAIN) -> str:
        """The commit id ``branch`` of ``repo_id`` points to."""
        with self._lock:
            return self.repos[repo_id].branches[branch]

    # ------------------------------------------------------------------ operations (called by the handler)
    def create_repo(self, repo_id: str) -> bool:
        """Create an empty repo with one initial commit; ``False`` if it already exists."""
        with self._lock:
            if repo_id in self.repos:
                return False
            initial = hashlib.sha1(f"initial commit of {repo_id}".encode()).hexdigest()
            self.repos[repo_id] = Repo(commits={initial: {}}, branches={MAIN: initial})
            return True

    def commit(self, repo_id: str, branch: str, added: dict[str, bytes], deleted: list[str]) -> str:
        with self._lock:
            repo = self.repos[repo_id]
            parent = repo.branches[branch]
            tree = dict(repo.commits[parent])
            for path in deleted:
                tree.pop(path, None)
            tree.update(added)
            digest = hashlib.sha1(parent.encode())
            for path in sorted(tree):
                digest.update(path.encode() + b"\0" + tree[path])
            commit_id = digest.hexdigest()
            repo.commits[commit_id] = tree
            repo.branches[branch] = commit_id
            return commit_id


def _git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = REQUEST_TIMEOUT_S

        def log_message(self, format: str, *args: object) -> None:  # silence the default stderr log
            pass

        # -------------------------------------------------------------- plumbing
        def _record(self) -> str:
            path = urlsplit(self.path).path
            with hub._lock:
                hub.requests.append(Request(self.command, path, dict(self.headers.items())))
            return path

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    chunk = self.rfile.read(size)
                    self.rfile.readline()
                    if size == 0:
                        return b"".join(chunks)
                    chunks.append(chunk)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False
        ) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
            self._send(
                status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
            )

        def _error(self, status: int, code: str, message: str, head: bool = False, **headers: str) -> None:
            body = json.dumps({"error": message}).encode()
            all_headers = {
                "Content-Type": "application/json",
                "X-Error-Code": code,
                "X-Error-Message": message,
            }
            self._send(status, body, {**all_headers, **headers}, head=head)

        # -------------------------------------------------------------- verbs
        def do_HEAD(self) -> None:
            self._resolve(self._record(), head=True)

        def do_GET(self) -> None:
            self._resolve(self._record(), head=False)

        def do_POST(self) -> None:
            path = self._record()
            body = self._body()
            if path == "/api/repos/create":
                return self._create(json.loads(body))
            if path == "/api/validate-yaml":
                return self._validate_yaml(json.loads(body)["content"])
            parts = path.split("/")
            # /api/models/{org}/{name}/{action}/{revision}
            if len(parts) == 7 and parts[:3] == ["", "api", "models"]:
                repo_id, action, revision = f"{parts[3]}/{parts[4]}", parts[5], unquote(parts[6])
                if repo_id not in hub.repos:
                    return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                if revision not in hub.repos[repo_id].branches:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                if action == "preupload":
                    return self._preupload(json.loads(body))
                if action == "commit":
                    return self._commit(repo_id, revision, body)
            self._error(404, "NotFound", f"Fake Hub has no route POST {path}")

        # -------------------------------------------------------------- routes
        def _create(self, payload: dict) -> None:
            if payload.get("type", "model") != "model":
                return self._error(400, "BadRequest", "Fake Hub only hosts model repos")
            repo_id = f"{payload['organization']}/{payload['name']}"
            url = f"{hub.url}/{repo_id}"
            if not hub.create_repo(repo_id):
                return self._json(409, {"error": "You already created this model repo", "url": url})
            self._json(200, {"url": url, "name": repo_id})

        def _validate_yaml(self, content: str) -> None:
            error = None
            if not content.startswith("---\n") or "\n---\n" not in content[3:]:
                error = "README.md has no YAML front matter"
            else:
                try:
                    front = yaml.safe_load(content[4 : content.index("\n---\n", 3)])
                except yaml.YAMLError as exc:
                    front, error = None, f"invalid YAML: {exc}"
                if error is None and not isinstance(front, dict):
                    error = "the front matter is not a mapping"
            if error is not None:
                return self._json(400, {"errors": [{"message": error}], "warnings": []})
            self._json(200, {"errors": [], "warnings": []})

        def _preupload(self, payload: dict) -> None:
            files = [
                {"path": item["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                for item in payload["files"]
            ]
            self._json(200, {"files": files, "commitOid": None})

        def _commit(self, repo_id: str, branch: str, body: bytes) -> None:
            added: dict[str, bytes] = {}
            deleted: list[str] = []
            for line in body.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "file":
                    if value.get("encoding") != "base64":
                        return self._error(400, "BadRequest", f"unsupported encoding {value.get('encoding')}")
                    added[value["path"]] = base64.b64decode(value["content"])
                elif key in ("deletedFile", "deletedFolder"):
                    deleted.append(value["path"])
                elif key != "header":
                    return self._error(400, "BadRequest", f"Fake Hub does not support {key!r} operations")
            commit_id = hub.commit(repo_id, branch, added, deleted)
            self._json(
                200,
                {
                    "commitUrl": f"{hub.url}/{repo_id}/commit/{commit_id}",
                    "commitOid": commit_id,
                    "pullRequestUrl": None,
                    "success": True,
                },
            )

        def _resolve(self, path: str, head: bool) -> None:
            # /{org}/{name}/resolve/{revision}/{filename...}
            parts = path.split("/", 6)
            if len(parts) < 6 or parts[3] != "resolve":
                return self._error(404, "NotFound", f"Fake Hub has no route {self.command} {path}", head=head)
            repo_id, revision = f"{parts[1]}/{parts[2]}", unquote(parts[4])
            filename = unquote("/".join(parts[5:]))
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head=head)
            commit_id = repo.resolve(revision)
            if commit_id is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
            content = repo.commits[commit_id].get(filename)
            if content is None:
                return self._error(
                    404,
                    "EntryNotFound",
                    f"{filename} does not exist",
                    head=head,
                    **{"X-Repo-Commit": commit_id},
                )
            headers = {
                "Content-Type": "application/octet-stream",
                "X-Repo-Commit": commit_id,
                "ETag": f'"{_git_blob_sha1(content)}"',
            }
            self._send(200, content, headers, head=head)

    return Handler

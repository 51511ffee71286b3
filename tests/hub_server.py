"""A small in-memory server speaking the Hugging Face Hub protocol, for tests without a network.

It implements what ``huggingface_hub``'s ``HfApi.create_repo``, ``create_branch``,
``upload_folder`` (preupload answering ``uploadMode: "regular"``, then an NDJSON commit with
base64 contents), ``repo_info``, ``list_repo_tree``, ``list_repo_refs``, ``hf_hub_download``
and ``snapshot_download`` send: repositories, branches, commits with parents, resolve by
branch or commit sha with ``X-Repo-Commit``, ``ETag`` and ``Content-Length`` headers, and the
``X-Error-Code`` answers the client turns into its own exceptions. Requests it does not know
are answered 501 and recorded in ``HubServer.unknown_requests`` so a test can fail loudly.

Usage::

    with HubServer(token="secret") as hub:
        HfApi(endpoint=hub.url, token="secret").create_repo("org/name")
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

_REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
_REV = r"(?P<rev>[^/]+)"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, as the Hub reports it for regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        """The commit a branch name or a (full or abbreviated) commit sha points to."""
        revision = unquote(revision)
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            found = [c for oid, c in self.commits.items() if oid.startswith(revision)]
            if len(found) == 1:
                return found[0]
        return None

    def commit(self, branch: str, message: str, files: dict[str, bytes],
               deleted: set[str] = frozenset()) -> Commit:
        parent = self.branches.get(branch)
        content = dict(self.commits[parent].files) if parent else {}
        content.update(files)
        for path in deleted:
            content.pop(path, None)
        digest = hashlib.sha1(f"{self.repo_id}\n{parent}\n{message}\n{len(self.commits)}".encode())
        for path in sorted(content):
            digest.update(f"{path}:{git_blob_sha1(content[path])}\n".encode())
        new = Commit(digest.hexdigest(), parent, message, content)
        self.commits[new.oid] = new
        self.branches[branch] = new.oid
        return new


class HubServer:
    """A Hub-protocol HTTP server on 127.0.0.1 in a background thread."""

    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.unknown_requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._url = ""

    @property
    def url(self) -> str:
        """The endpoint; it stays known after :meth:`stop`, when nothing answers there."""
        return self._url

    def start(self) -> HubServer:
        server = self

        class Handler(_HubHandler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        host, port = self._httpd.server_address[:2]
        self._url = f"http://{host}:{port}"
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and close its sockets, kept-alive client connections included:
        afterwards every request fails as it would with the hub unreachable."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None
            with self._lock:
                for connection in self._connections:
                    try:
                        connection.shutdown(socket.SHUT_RDWR)
                    except OSError:  # already closed by the client
                        pass
                self._connections.clear()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _HubHandler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    # -- plumbing -------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        super().finish()
        with self.hub._lock:
            self.hub._connections.discard(self.connection)

    def log_message(self, format, *args) -> None:  # keep test output quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None,
               headers: dict | None = None) -> None:
        headers = dict(headers or {})
        if code:
            headers["X-Error-Code"] = code
        headers["X-Error-Message"] = message
        self._json(status, {"error": message}, headers)

    def _authorised(self) -> bool:
        if self.hub.token is None:
            return True
        return self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _repo(self, repo_id: str, *, write: bool = False) -> Repo | None:
        """The repo, or None after answering like the Hub does for a missing or hidden one."""
        repo = self.hub.repos.get(repo_id)
        if write and not self._authorised():
            self._error(401, "Invalid credentials in Authorization header")
            return None
        if repo is None or (repo.private and not self._authorised()):
            self._error(404 if self._authorised() else 401, "Repository not found", "RepoNotFound")
            return None
        return repo

    def _resolve(self, repo: Repo, revision: str) -> Commit | None:
        commit = repo.resolve(revision)
        if commit is None:
            self._error(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return commit

    def _route(self, method: str):
        path = unquote(urlsplit(self.path).path)
        routes = [
            ("POST", r"/api/repos/create", self._create_repo),
            ("POST", r"/api/validate-yaml", self._validate_yaml),
            ("GET", r"/api/agent-harnesses", self._agent_harnesses),
            ("POST", rf"/api/models/{_REPO}/preupload/{_REV}", self._preupload),
            ("POST", rf"/api/models/{_REPO}/commit/{_REV}", self._commit),
            ("POST", rf"/api/models/{_REPO}/branch/{_REV}", self._create_branch),
            ("GET", rf"/api/models/{_REPO}/refs", self._refs),
            ("GET", rf"/api/models/{_REPO}/revision/{_REV}", self._info),
            ("GET", rf"/api/models/{_REPO}", self._info),
            ("GET", rf"/api/models/{_REPO}/tree/{_REV}(?:/(?P<sub>.*))?", self._tree),
            ("HEAD", rf"/{_REPO}/resolve/{_REV}/(?P<file>.+)", self._resolve_file),
            ("GET", rf"/{_REPO}/resolve/{_REV}/(?P<file>.+)", self._resolve_file),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return handler, match.groupdict()
        return None, {}

    def _dispatch(self) -> None:
        with self.hub._lock:
            self.hub.requests.append((self.command, self.path))
        handler, params = self._route(self.command)
        if handler is None:
            body = self._body() if self.command in ("POST", "PUT") else b""
            with self.hub._lock:
                self.hub.unknown_requests.append((self.command, self.path))
            self._error(501, f"test hub: unknown request {self.command} {self.path} "
                             f"({len(body)} bytes)")
            return
        with self.hub._lock:
            handler(**params)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # -- endpoints ------------------------------------------------------------------------

    def _create_repo(self) -> None:
        payload = json.loads(self._body() or b"{}")
        if not self._authorised():
            self._error(401, "Invalid credentials in Authorization header")
            return
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        url = f"{self.hub.url}/{repo_id}"
        if repo_id in self.hub.repos:
            message = "You already created this model repo"
            self._json(409, {"error": message, "url": url}, {"X-Error-Message": message})
            return
        repo = Repo(repo_id, private=payload.get("visibility") == "private"
                    or bool(payload.get("private")))
        repo.commit("main", "initial commit", {".gitattributes": b"*.safetensors filter=lfs "
                                                                 b"diff=lfs merge=lfs -text\n"})
        self.hub.repos[repo_id] = repo
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self) -> None:
        content = json.loads(self._body() or b"{}").get("content", "")
        match = re.match(r"^---\n(.*?)\n---", content, re.S)
        try:
            if match:
                yaml.safe_load(match.group(1))
        except yaml.YAMLError as error:
            self._json(400, {"errors": [{"message": str(error)}], "warnings": []})
            return
        self._json(200, {"errors": [], "warnings": []})

    def _agent_harnesses(self) -> None:  # the client's best-effort telemetry registry
        self._json(200, {"standardEnvVars": [], "harnesses": {}})

    def _preupload(self, repo: str, rev: str) -> None:
        payload = json.loads(self._body() or b"{}")
        found = self._repo(repo, write=True)
        if found is None:
            return
        head = found.resolve(rev)
        existing = head.files if head else {}
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                  "oid": git_blob_sha1(existing[f["path"]]) if f["path"] in existing else None}
                 for f in payload.get("files", [])]
        self._json(200, {"files": files, "commitOid": head.oid if head else None})

    def _commit(self, repo: str, rev: str) -> None:
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        found = self._repo(repo, write=True)
        if found is None:
            return
        branch = unquote(rev)
        if branch not in found.branches:
            self._error(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            return
        header, files, deleted = {}, {}, set()
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "header":
                header = value
            elif key == "file" and value.get("encoding") == "base64":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.add(value["path"])
            else:
                self._error(400, f"test hub: unsupported commit operation {key!r}")
                return
        parent = header.get("parentCommit")
        if parent and found.branches[branch] != parent:
            self._error(412, "A commit has happened since. Please refresh and try again.")
            return
        new = found.commit(branch, header.get("summary", ""), files, deleted)
        self._json(200, {"success": True, "commitOid": new.oid,
                         "commitUrl": f"{self.hub.url}/{repo}/commit/{new.oid}",
                         "pullRequestUrl": None})

    def _create_branch(self, repo: str, rev: str) -> None:
        payload = json.loads(self._body() or b"{}")
        found = self._repo(repo, write=True)
        if found is None:
            return
        branch = unquote(rev)
        if branch in found.branches:
            self._error(409, f"Reference refs/heads/{branch} already exists")
            return
        start = found.resolve(payload.get("startingPoint") or "main")
        found.branches[branch] = start.oid
        self._json(200, {})

    def _refs(self, repo: str) -> None:
        found = self._repo(repo)
        if found is not None:
            self._json(200, {"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid}
                                          for b, oid in found.branches.items()],
                             "converts": [], "tags": []})

    def _info(self, repo: str, rev: str = "main") -> None:
        found = self._repo(repo)
        if found is None:
            return
        commit = self._resolve(found, rev)
        if commit is not None:
            self._json(200, {"id": repo, "modelId": repo, "sha": commit.oid,
                             "private": found.private, "tags": [], "downloads": 0, "likes": 0,
                             "siblings": [{"rfilename": p} for p in sorted(commit.files)]})

    def _tree(self, repo: str, rev: str, sub: str | None = None) -> None:
        found = self._repo(repo)
        if found is None:
            return
        commit = self._resolve(found, rev)
        if commit is None:
            return
        prefix = f"{sub.rstrip('/')}/" if sub else ""
        recursive = parse_qs(urlsplit(self.path).query).get("recursive", ["false"])[0] == "true"
        entries, folders = [], set()
        for path, data in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            entries.append({"type": "file", "path": path, "size": len(data),
                            "oid": git_blob_sha1(data)})
        entries += [{"type": "directory", "path": f, "size": 0, "oid": "0" * 40}
                    for f in sorted(folders)]
        self._json(200, entries)

    def _resolve_file(self, repo: str, rev: str, file: str) -> None:
        found = self._repo(repo)
        if found is None:
            return
        commit = self._resolve(found, rev)
        if commit is None:
            return
        headers = {"X-Repo-Commit": commit.oid}
        data = commit.files.get(file)
        if data is None:
            self._error(404, f"Entry not found: {file}", "EntryNotFound", headers)
            return
        headers["ETag"] = f'"{git_blob_sha1(data)}"'
        start = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if start and self.command == "GET":
            offset = int(start.group(1))
            headers["Content-Range"] = f"bytes {offset}-{len(data) - 1}/{len(data)}"
            self._send(206, data[offset:], headers, "application/octet-stream")
            return
        self._send(200, data, headers, "application/octet-stream")

"""A local Hugging Face Hub endpoint: real files over HTTP with the routes and headers huggingface_hub
2.x uses, every request recorded (method, path, headers) so tests can count and inspect them.

Routes:
  GET  /api/models/{org}/{name}[/revision/{rev}]        repo info with the resolved commit `sha` (no rev: main)
  GET  /api/models/{org}/{name}/tree/{rev}[/{path}]     file entries: path, size, oid (git blob), lfs {oid, size}
  HEAD /{org}/{name}/resolve/{rev}/{path}               X-Repo-Commit, ETag (git oid) or X-Linked-Etag +
  GET  /{org}/{name}/resolve/{rev}/{path}                 X-Linked-Size (LFS sha256), Content-Length; the bytes
  GET  /api/agent-harnesses                             404 (the client's telemetry probe)
Tamper hooks: `serve_instead[(repo, path)]` changes the bytes served (metadata unchanged),
`lfs_sha_override[(repo, path)]` changes the sha256 the tree API reports.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx")


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    lfs: set[str] = field(default_factory=set)


class LocalHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.serve_instead: dict[tuple[str, str], bytes] = {}
        self.lfs_sha_override: dict[tuple[str, str], str] = {}
        self.required_token: str | None = None
        self.chunk_delay_s = 0.0  # > 0 streams file bodies slowly (`chunk_bytes` per delay), for cancel tests
        self.chunk_bytes = 1024 * 1024
        self.bodies_sent: list[int] = []  # bytes actually written per GET body (less when the client hung up)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- content ----

    def add_commit(self, repo_id: str, files: dict[str, bytes], *, ref: str = "main",
                   tags: tuple[str, ...] = ()) -> str:
        repo = self.repos.setdefault(repo_id, Repo())
        digest = hashlib.sha1(repo_id.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_oid(files[path]).encode())
        commit = digest.hexdigest()
        repo.commits[commit] = dict(files)
        repo.lfs |= {p for p in files if p.endswith(LFS_SUFFIXES)}
        for name in (ref, *tags):
            repo.refs[name] = commit
        return commit

    def count(self, *, excluding_telemetry: bool = True) -> int:
        with self._lock:
            return sum(1 for r in self.requests if not (excluding_telemetry and r.path.startswith("/api/agent-")))

    def file_gets(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests if r.method == "GET" and "/resolve/" in r.path]

    # ---- server ----

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "LocalHub":
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ---- lookups for the handler ----

    def _commit(self, repo_id: str, rev: str) -> tuple[str, dict[str, bytes]] | tuple[str, None] | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return None
        commit = rev if rev in repo.commits else repo.refs.get(rev)
        return (commit, repo.commits[commit]) if commit else ("", None)

    def _entry(self, repo_id: str, path: str, data: bytes) -> dict:
        entry = {"type": "file", "path": path, "size": len(data), "oid": git_blob_oid(data)}
        if path in self.repos[repo_id].lfs:
            sha = self.lfs_sha_override.get((repo_id, path), hashlib.sha256(data).hexdigest())
            entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 134}
        return entry


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: LocalHub

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass

    def do_HEAD(self):
        self._route(head=True)

    def do_GET(self):
        self._route(head=False)

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, head=False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self._write_body(body)

    def _write_body(self, body: bytes) -> None:
        step = self.hub.chunk_bytes if self.hub.chunk_delay_s else len(body)
        sent = 0
        try:
            for start in range(0, len(body), step):
                self.wfile.write(body[start:start + step])
                self.wfile.flush()
                sent += len(body[start:start + step])
                if self.hub.chunk_delay_s:
                    time.sleep(self.hub.chunk_delay_s)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            with self.hub._lock:
                self.hub.bodies_sent.append(sent)

    def _json(self, value, *, head=False) -> None:
        self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"}, head=head)

    def _not_found(self, code: str, commit: str = "", *, head=False) -> None:
        headers = {"X-Error-Code": code, **({"X-Repo-Commit": commit} if commit else {})}
        self._send(404, b'{"error": "not found"}', headers, head=head)

    def _route(self, *, head: bool) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        with hub._lock:
            hub.requests.append(Request(self.command, split.path, {k.lower(): v for k, v in self.headers.items()}))
        parts = split.path.split("/")[1:]
        if split.path.startswith("/api/agent-harnesses"):
            return self._not_found("NotFound", head=head)
        if hub.required_token and self.headers.get("Authorization") != f"Bearer {hub.required_token}":
            return self._send(401, b'{"error": "unauthorized"}', {"X-Error-Message": "Invalid username or password."})
        if parts[:2] == ["api", "models"] and len(parts) == 4:  # repo info at the default branch
            return self._api(f"{parts[2]}/{parts[3]}", "revision", "main", "", split.query, head)
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo_id, rev, sub = f"{parts[2]}/{parts[3]}", unquote(parts[5]), "/".join(parts[6:])
            return self._api(repo_id, parts[4], rev, sub, split.query, head)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(f"{parts[0]}/{parts[1]}", unquote(parts[3]), unquote("/".join(parts[4:])), head)
        self._not_found("NotFound", head=head)

    def _api(self, repo_id: str, kind: str, rev: str, sub: str, query: str, head: bool) -> None:
        found = self.hub._commit(repo_id, rev)
        if found is None:
            return self._not_found("RepoNotFound", head=head)
        commit, files = found
        if files is None:
            return self._not_found("RevisionNotFound", head=head)
        if kind == "revision":
            siblings = [{"rfilename": p} for p in sorted(files)]
            return self._json({"id": repo_id, "modelId": repo_id, "sha": commit, "siblings": siblings}, head=head)
        recursive = parse_qs(query).get("recursive", ["false"])[0].lower() == "true"
        prefix = unquote(sub).strip("/")
        entries, folders = [], set()
        for path in sorted(files):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1:] if prefix else path
            if "/" in rest and not recursive:
                folders.add((prefix + "/" if prefix else "") + rest.split("/")[0])
                continue
            entries.append(self.hub._entry(repo_id, path, files[path]))
        entries += [{"type": "directory", "path": f, "oid": "0" * 40} for f in sorted(folders)]
        self._json(entries, head=head)

    def _resolve(self, repo_id: str, rev: str, path: str, head: bool) -> None:
        found = self.hub._commit(repo_id, rev)
        if found is None:
            return self._not_found("RepoNotFound", head=head)
        commit, files = found
        if files is None:
            return self._not_found("RevisionNotFound", head=head)
        if path not in files:
            return self._not_found("EntryNotFound", commit, head=head)
        data = files[path]
        headers = {"X-Repo-Commit": commit, "Content-Type": "application/octet-stream", "Accept-Ranges": "none"}
        if path in self.hub.repos[repo_id].lfs:
            headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
            headers["X-Linked-Size"] = str(len(data))
        headers["ETag"] = f'"{git_blob_oid(data)}"'
        self._send(200, self.hub.serve_instead.get((repo_id, path), data), headers, head=head)

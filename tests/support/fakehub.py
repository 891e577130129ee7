"""A local stand-in for the Hugging Face Hub endpoints agentcap's export uses (``HF_ENDPOINT``).

Only what huggingface_hub sends for create_repo, repo_info, list_repo_files, the preupload + commit
of regular (inline base64) files, downloading a file, and the collection calls. Every request is
recorded (method, path, JSON body or the commit's NDJSON lines), so a test can check what the client
actually sent. Never reached from outside this machine: it binds 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)

    def entries(self, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        """Tree entries under ``prefix`` (files and the directories implied by their paths)."""
        out: dict[str, dict[str, Any]] = {}
        base = prefix + "/" if prefix else ""
        for name, data in sorted(self.files.items()):
            if not name.startswith(base):
                continue
            parts = name[len(base):].split("/")
            for depth in range(1, len(parts)):
                d = base + "/".join(parts[:depth])
                if recursive or depth == 1:
                    out.setdefault(d, {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()})
            if recursive or len(parts) == 1:
                out[name] = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
        return list(out.values())

    @property
    def sha(self) -> str:
        return hashlib.sha1(str(len(self.commits)).encode()).hexdigest()


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.collections: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.ranged: list[tuple[str, int, int]] = []  # (path, first byte, last byte) of each ranged read
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub._handle(self, "GET")

            def do_HEAD(self) -> None:
                hub._handle(self, "HEAD")

            def do_POST(self) -> None:
                hub._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- dispatch -------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path, _, query = h.path.partition("?")
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length) if length else b""
        body: Any = raw
        if "ndjson" in (h.headers.get("content-type") or ""):
            body = [json.loads(line) for line in raw.splitlines() if line.strip()]
        elif "x-www-form-urlencoded" in (h.headers.get("content-type") or ""):
            body = {k: v for k, v in parse_qs(raw.decode()).items()}
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                pass
        with self.lock:
            self.requests.append((method, path, body))
            status, headers, payload = self._route(method, path, body, query)
            rng = h.headers.get("range")
            if rng and status == 200 and isinstance(payload, bytes):  # ranged reads (HfFileSystem)
                start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
                total = len(payload)
                if start_s == "":
                    start, end = max(0, total - int(end_s)), total - 1
                else:
                    start, end = int(start_s), min(int(end_s) if end_s else total - 1, total - 1)
                payload = payload[start:end + 1]
                status, headers = 206, {**headers, "Content-Range": f"bytes {start}-{end}/{total}"}
                self.ranged.append((path, start, end))
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h.send_response(status)
        for k, v in {"Content-Type": "application/json", **headers}.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(data)

    def _route(self, method: str, path: str, body: Any, query: str = "") -> tuple[int, dict[str, str], Any]:
        not_found = (404, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"})
        if method == "POST" and path == "/api/validate-yaml":
            return 200, {}, {"errors": [], "warnings": []}
        if method == "POST" and path == "/api/repos/create":
            repo_id = f"{body.get('organization') or 'me'}/{body['name']}"
            if repo_id in self.repos:
                return 409, {}, {"error": "You already created this dataset repo", "url": f"{self.url}/datasets/{repo_id}"}
            self.repos[repo_id] = Repo(private=body.get("private") is True or body.get("visibility") == "private")
            return 200, {}, {"url": f"{self.url}/datasets/{repo_id}", "name": repo_id}
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)
        if m and method == "GET":
            repo = self.repos.get(m.group(1))
            if repo is None:
                return not_found
            return 200, {}, {"id": m.group(1), "sha": repo.sha, "private": repo.private,
                             "siblings": [{"rfilename": f} for f in sorted(repo.files)]}
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/tree/[^/]+(/.*)?", path)
        if m:
            repo = self.repos.get(m.group(1))
            if repo is None:
                return not_found
            return 200, {}, repo.entries((m.group(2) or "").strip("/"), recursive="recursive=true" in query.lower())
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/paths-info/[^/]+", path)
        if m:
            repo = self.repos.get(m.group(1))
            if repo is None:
                return not_found
            wanted = body.get("paths", []) if isinstance(body, dict) else []
            return 200, {}, [e for e in repo.entries("", recursive=True) if e["path"] in wanted]
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/preupload/[^/]+", path)
        if m:
            if m.group(1) not in self.repos:
                return not_found
            return 200, {}, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                       for f in body["files"]]}
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/commit/[^/]+", path)
        if m:
            repo = self.repos.get(m.group(1))
            if repo is None:
                return not_found
            header = next(x["value"] for x in body if x["key"] == "header")
            added = {}
            for item in body:
                if item["key"] == "file":
                    added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            repo.files.update(added)
            repo.commits.append({"summary": header.get("summary"), "paths": sorted(added)})
            return 200, {}, {"commitUrl": f"{self.url}/datasets/{m.group(1)}/commit/{repo.sha}",
                             "commitOid": repo.sha}
        m = re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/[^/]+/(.+)", path)
        if m:
            repo = self.repos.get(m.group(1))
            if repo is None:
                return not_found
            data = repo.files.get(m.group(2))
            if data is None:
                return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.sha}, {"error": "Entry not found"}
            etag = hashlib.sha1(data).hexdigest()
            return 200, {"X-Repo-Commit": repo.sha, "ETag": f'"{etag}"', "Content-Type": "text/plain"}, data
        if method == "POST" and path == "/api/collections":
            slug = f"{body['namespace']}/{re.sub(r'[^a-z0-9]+', '-', body['title'].lower())}-0123456789abcdef01234567"
            if slug in self.collections:
                return 409, {}, {"error": "Collection already exists", "slug": slug}
            self.collections[slug] = {"slug": slug, "title": body["title"], "owner": {"name": body["namespace"]},
                                      "items": [], "lastUpdated": "2026-11-22T00:00:00.000Z", "position": 0,
                                      "private": bool(body.get("private")), "theme": "default", "upvotes": 0,
                                      "description": body.get("description")}
            return 200, {}, self.collections[slug]
        m = re.fullmatch(r"/api/collections/(.+?)(/items)?", path)
        if m:
            col = self.collections.get(m.group(1))
            if col is None:
                return 404, {}, {"error": "Collection not found"}
            if m.group(2) and method == "POST":
                item = body["item"]
                if any(i["id"] == item["id"] for i in col["items"]):
                    return 409, {}, {"error": "Item already in the collection"}
                col["items"].append({"_id": f"oid{len(col['items'])}", "id": item["id"], "type": item["type"],
                                     "position": len(col["items"])})
            return 200, {}, col
        return 404, {}, {"error": f"fake hub: no route for {method} {path}"}

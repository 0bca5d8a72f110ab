"""A local stand-in for the hosts the project talks to, on 127.0.0.1, for tests of the real clients:

- the Hugging Face hub: the routes ``snapshot_download``, ``hf_hub_download``, ``list_repo_tree`` and
  ``verify_repo_checksums`` call (``/api/{type}s/{repo}/revision/{rev}``, ``/api/{type}s/{repo}/tree/{rev}``,
  ``HEAD``/``GET /[datasets/]{repo}/resolve/{rev}/{path}``), with the hub's ETag, ``X-Repo-Commit``,
  ``X-Linked-Etag``/``X-Linked-Size`` headers and range requests; and the routes ``create_repo`` and
  ``upload_folder`` call (``POST /api/repos/create``, ``/api/{type}s/{repo}/preupload/{rev}`` and
  ``/api/{type}s/{repo}/commit/{rev}``). The preupload answers "regular" for every file, so a commit carries the
  files' bytes itself (the hub sends large files through LFS or Xet, the client's own transfer, not emulated here);
  each commit gets a new commit id and moves ``main``. Point ``HF_ENDPOINT`` (or ``endpoint=``) at ``url``;
- plain HTTPS hosts through a mirror: ``GET /{host}/{path}`` serves ``https://{host}/{path}`` (with ranges);
- Kaggle's API: ``POST /api/v1/competitions.CompetitionApiService/DownloadDataFiles`` redirects to the competition's
  zip (a ``kaggle`` process reaches it with ``KAGGLE_API_ENVIRONMENT=LOCALHOST``, read when it is imported, which
  means ``http://localhost``, port 80: ``LocalHosts(kaggle=True)``; ``kaggle_local`` points an already imported
  client at ``url`` instead).

``cut_after(path, n)`` makes the next GET of a file send its full length as ``Content-Length`` and close the
connection after ``n`` bytes, as a dropped download does; ``requests`` records every request (method, path, Range).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

COMMIT = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c"
KAGGLE_PORT = 80  # the kaggle client's --local endpoint, http://localhost
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_RESOLVE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_API = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)/(revision|tree)/([^/]+)(?:/(.*))?$")
_UPLOAD = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)/(preupload|commit)/([^/]+)$")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str = COMMIT
    lfs: bool = True  # files served as LFS objects (sha256 ETag), as the hub serves large files

    def entry(self, path: str) -> dict:
        data = self.files[path]
        item = {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}
        if self.lfs:
            item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return item


@dataclass
class HostState:
    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)  # (type, repo id) -> repo
    web: dict[str, bytes] = field(default_factory=dict)  # "host/path" -> bytes
    refused: set[str] = field(default_factory=set)  # "host/path" answered 403
    competitions: dict[str, bytes] = field(default_factory=dict)  # competition -> its zip
    cuts: dict[str, int] = field(default_factory=dict)  # request path -> bytes to send before closing (once)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HostState

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _record(self) -> str:
        path = unquote(urlsplit(self.path).path)
        with self.state.lock:
            self.state.requests.append((self.command, path, self.headers.get("Range")))
        return path

    def do_HEAD(self) -> None:
        self._route(self._record(), body=False)

    def do_GET(self) -> None:
        self._route(self._record(), body=True)

    def do_POST(self) -> None:
        path = self._record()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if match := _UPLOAD.match(path):
            return self._upload(*match.groups(), body)
        payload = json.loads(body or b"{}")
        if path == "/api/repos/create":
            return self._create_repo(payload)
        if path == "/api/validate-yaml":  # a README's metadata block must be a YAML mapping, as the hub checks
            front = payload["content"].split("---")[1] if payload["content"].startswith("---") else ""
            valid = isinstance(yaml.safe_load(front) or {}, dict)
            errors = [] if valid else [{"message": "metadata is not a YAML mapping"}]
            return self._reply(200 if valid else 400, json.dumps({"errors": errors, "warnings": []}).encode(),
                               "application/json")
        if path == "/api/v1/competitions.CompetitionApiService/DownloadDataFiles":
            name = payload.get("competitionName", "")
            if name not in self.state.competitions:
                return self._reply(404, b'{"code": 404, "message": "not found"}', "application/json")
            return self._reply(302, b"", headers={"Location": f"/kaggle-files/{name}.zip"})
        self._reply(404, b"")

    def _route(self, path: str, body: bool) -> None:
        if match := _API.match(path):
            return self._api(*match.groups())
        if match := _RESOLVE.match(path):
            kind, repo_id, revision, file = match.groups()
            repo = self.state.repos.get(((kind or "model").rstrip("s"), repo_id))
            if repo is not None and revision not in (repo.commit, "main"):
                return self._reply(404, b"", headers={"X-Error-Code": "RevisionNotFound"})
            if repo is None or file not in repo.files:
                return self._reply(404, b"", headers={"X-Error-Code": "EntryNotFound" if repo else "RepoNotFound"})
            entry = repo.entry(file)
            etag = entry["lfs"]["oid"] if repo.lfs else entry["oid"]
            headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"'}
            if repo.lfs:
                headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(repo.files[file]))})
            return self._send_bytes(path, repo.files[file], body, headers)
        if path.startswith("/kaggle-files/"):
            data = self.state.competitions.get(path.removeprefix("/kaggle-files/").removesuffix(".zip"))
            if data is None:
                return self._reply(404, b"")
            return self._send_bytes(path, data, body, {"Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"})
        key = path.lstrip("/")
        if key in self.state.refused:
            return self._reply(403, b"forbidden")
        if key in self.state.web:
            return self._send_bytes(path, self.state.web[key], body, {})
        self._reply(404, b"not found")

    def _api(self, kind: str, repo_id: str, what: str, revision: str, sub: str | None) -> None:
        repo = self.state.repos.get((kind.rstrip("s"), repo_id))
        if repo is None:
            return self._reply(404, b'{"error": "Repository not found"}', "application/json",
                               {"X-Error-Code": "RepoNotFound"})
        if revision not in (repo.commit, "main"):
            return self._reply(404, b'{"error": "Invalid rev id"}', "application/json",
                               {"X-Error-Code": "RevisionNotFound"})
        if what == "revision":
            info = {"id": repo_id, "sha": repo.commit, "siblings": [{"rfilename": p} for p in repo.files]}
            return self._reply(200, json.dumps(info).encode(), "application/json")
        query = parse_qs(urlsplit(self.path).query)
        prefix = f"{sub.rstrip('/')}/" if sub else ""
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries, folders = [], set()
        for file in sorted(repo.files):
            if not file.startswith(prefix):
                continue
            rest = file[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/", 1)[0])
                continue
            parts = rest.split("/")[:-1]
            folders.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
            entries.append(repo.entry(file))
        listing = [{"type": "directory", "path": f, "size": 0, "oid": "0" * 40} for f in sorted(folders)] + entries
        self._reply(200, json.dumps(listing).encode(), "application/json")

    def _create_repo(self, payload: dict) -> None:
        kind = payload.get("type") or "model"
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        url = f"http://{self.headers['Host']}/{'' if kind == 'model' else kind + 's/'}{repo_id}"
        with self.state.lock:
            if (kind, repo_id) in self.state.repos:
                return self._reply(409, json.dumps({"error": "repo exists", "url": url}).encode(), "application/json")
            self.state.repos[(kind, repo_id)] = Repo(files={}, commit=hashlib.sha1(repo_id.encode()).hexdigest(),
                                                     lfs=False)
        self._reply(200, json.dumps({"url": url}).encode(), "application/json")

    def _upload(self, kind: str, repo_id: str, what: str, revision: str, body: bytes) -> None:
        repo = self.state.repos.get((kind.rstrip("s"), repo_id))
        if repo is None:
            return self._reply(404, b'{"error": "Repository not found"}', "application/json",
                               {"X-Error-Code": "RepoNotFound"})
        if what == "preupload":
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                      "oid": git_blob_id(repo.files[f["path"]]) if f["path"] in repo.files else None}
                     for f in json.loads(body)["files"]]
            return self._reply(200, json.dumps({"files": files, "commitOid": repo.commit}).encode(),
                               "application/json")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        with self.state.lock:
            for line in lines:
                if line["key"] == "file":
                    repo.files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                elif line["key"] == "deletedFile":
                    repo.files.pop(line["value"]["path"], None)
                elif line["key"] != "header":
                    return self._reply(400, json.dumps({"error": f"{line['key']} is not served"}).encode(),
                                       "application/json")
            repo.commit = hashlib.sha1(repo.commit.encode() + body).hexdigest()
        self._reply(200, json.dumps({"commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/{repo.commit}",
                                     "commitOid": repo.commit, "pullRequestUrl": None}).encode(), "application/json")

    def _send_bytes(self, path: str, data: bytes, body: bool, headers: dict[str, str]) -> None:
        start, end, status = 0, len(data), 200
        wanted = self.headers.get("Range")
        if wanted and (match := _RANGE.fullmatch(wanted.strip())):
            start = int(match.group(1))
            end = min(int(match.group(2)) + 1, len(data)) if match.group(2) else len(data)
            if start >= len(data):
                return self._reply(416, b"", headers={"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{len(data)}"}
        chunk = data[start:end]
        with self.state.lock:
            cut = self.state.cuts.pop(path, None) if body else None
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(chunk)), "Accept-Ranges": "bytes",
                            "Content-Type": "application/octet-stream"}.items():
            self.send_header(name, value)
        self.end_headers()
        if not body:
            return
        if cut is not None:  # a dropped connection: part of the body, then the socket closes
            self.wfile.write(chunk[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)

    def _reply(self, status: int, payload: bytes, content_type: str = "text/plain",
               headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {**(headers or {}), "Content-Type": content_type,
                            "Content-Length": str(len(payload))}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class LocalHosts:
    """The servers and what they serve; ``url`` is the hub endpoint and the HTTPS mirror. With ``kaggle`` the Kaggle
    API answers on localhost:80 too, and ``self.kaggle`` says whether it could (tests of it skip when that port is
    taken or not ours to bind): only the modules that talk to Kaggle ask, so the others never hold the port."""

    def __init__(self, *, kaggle: bool = False) -> None:
        self.state = HostState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler)]
        self.kaggle = False
        if kaggle:
            try:
                self._servers.append(ThreadingHTTPServer(("127.0.0.1", KAGGLE_PORT), handler))
                self.kaggle = True
            except OSError:
                pass
        for server in self._servers:
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    def add_repo(self, repo_id: str, files: dict[str, bytes], *, repo_type: str = "dataset",
                 commit: str = COMMIT) -> Repo:
        repo = Repo(files=dict(files), commit=commit)
        self.state.repos[(repo_type, repo_id)] = repo
        return repo

    def add_web(self, url: str, data: bytes) -> None:
        """Serve ``url`` (https://host/path) at ``<mirror>/host/path``."""
        self.state.web[url.split("://", 1)[1]] = data

    def refuse(self, url: str) -> None:
        self.state.refused.add(url.split("://", 1)[1])

    def add_competition(self, name: str, zip_bytes: bytes) -> None:
        self.state.competitions[name] = zip_bytes

    def cut_after(self, request_path: str, nbytes: int) -> None:
        self.state.cuts[request_path] = nbytes

    @property
    def requests(self) -> list[tuple[str, str, str | None]]:
        return self.state.requests

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


def kaggle_local(monkeypatch, url: str) -> None:
    """Point this process's kaggle client at ``url``: its local environment (``KAGGLE_API_ENVIRONMENT=LOCALHOST``,
    read when it is imported) with that environment's endpoint, http://localhost, moved to ``url``, so an in-process
    test needs no port 80."""
    from kaggle.api.kaggle_api_extended import KaggleApi
    from kagglesdk import kaggle_env

    monkeypatch.setattr(KaggleApi, "args", ["--local"])
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.LOCAL, url)


def use_hub(monkeypatch, url: str, cache) -> None:
    """Point this process's huggingface_hub at ``url``, online, with its cache in ``cache``: what ``HF_ENDPOINT``,
    ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE=0`` do when it is imported (conftest imports it offline)."""
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", url)
    monkeypatch.setattr("huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE",
                        url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)

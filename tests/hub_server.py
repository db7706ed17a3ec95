"""A small stand-in for the Hugging Face Hub on 127.0.0.1, for tests that must never touch the network.

It answers the calls huggingface_hub makes for sst (read from its source, version 2.x):

- ``GET /api/models?author=A&expand=siblings&expand=sha``: the author's repositories, their commit and
  their files (``HfApi.list_models``);
- ``HEAD /<repo>/resolve/<revision>/<path>`` (``/datasets/<repo>/...`` for a dataset repository, kept in
  ``repos`` as ``datasets/<repo>``): the file's metadata in headers: ``X-Repo-Commit``, an
  ``ETag`` that is the file's sha256 (as the Hub's LFS files have) and ``Content-Length``
  (``get_hf_file_metadata``);
- ``GET /<repo>/resolve/<revision>/<path>``: the bytes (``http_get``), or, with ``drop_after`` set, the
  headers of the whole file and then only that many bytes before the connection is closed;
- any other ``GET /<path>``: a plain file from ``plain`` (for https-style URL downloads), cut short
  like a Hub file with ``drop_after``.

Every request is appended to ``requests`` as "METHOD path", so a test can assert that nothing was asked.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeHub:
    url: str = ""
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo id -> {path in repo: bytes}
    plain: dict[str, bytes] = field(default_factory=dict)  # URL path -> bytes
    requests: list[str] = field(default_factory=list)
    drop_after: int | None = None  # bytes sent before the connection is dropped (GET of a Hub file)

    def file_requests(self) -> list[str]:
        return [r for r in self.requests if "/resolve/" in r]


def _handler(hub: FakeHub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  head: bool = False, length: int | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _hub_file(self, head: bool) -> bool:
            path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
            parts = path.strip("/").split("/")
            kind = parts[:1] if parts[:1] == ["datasets"] else []  # a dataset repository
            parts = parts[len(kind):]
            if len(parts) < 5 or parts[2] != "resolve":
                return False
            repo, revision, name = "/".join(kind + parts[:2]), parts[3], "/".join(parts[4:])
            files = hub.repos.get(repo)
            if files is None:
                self._send(404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"}, head)
                return True
            if revision not in ("main", COMMIT):
                self._send(404, b'{"error":"Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"}, head)
                return True
            if name not in files:
                self._send(404, b'{"error":"Entry not found"}',
                           {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, head)
                return True
            data = files[name]
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                       "Accept-Ranges": "none", "Content-Type": "application/octet-stream"}
            if head or hub.drop_after is None:
                self._send(200, data, headers, head)
            else:  # promise the whole file, send part of it, hang up
                self._send(200, data[: hub.drop_after], headers, length=len(data))
                self.wfile.flush()
                self.close_connection = True
            return True

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
            hub.requests.append(f"HEAD {self.path}")
            if not self._hub_file(head=True):
                self._send(404, head=True)

        def do_GET(self) -> None:  # noqa: N802
            hub.requests.append(f"GET {self.path}")
            parsed = urllib.parse.urlparse(self.path)
            if parsed.path == "/api/models":
                author = urllib.parse.parse_qs(parsed.query).get("author", [""])[0]
                listing = [{"id": repo, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]}
                           for repo, files in hub.repos.items() if repo.split("/")[0] == author]
                self._send(200, json.dumps(listing).encode(), {"Content-Type": "application/json"})
            elif self._hub_file(head=False):
                pass
            elif parsed.path in hub.plain and hub.drop_after is not None:
                data = hub.plain[parsed.path]
                self._send(200, data[: hub.drop_after], length=len(data))
                self.close_connection = True
            elif parsed.path in hub.plain:
                self._send(200, hub.plain[parsed.path])
            else:
                self._send(404, b"not found")

    return Handler


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A FakeHub served on a random local port, with HF_ENDPOINT pointing to it, HF_HOME and the sst cache
    in tmp_path, no token, no weights folder, and huggingface_hub's settings re-read from that environment."""
    import huggingface_hub.constants as hf_constants

    hub = FakeHub()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE", "SST_WEIGHTS_DIR",
                 "SST_WEIGHTS_SOURCES", "HF_HUB_DISABLE_XET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    importlib.reload(hf_constants)  # huggingface_hub reads its environment once, at import
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        monkeypatch.undo()
        importlib.reload(hf_constants)


def set_offline(monkeypatch: pytest.MonkeyPatch, offline: bool = True) -> None:
    """HF_HUB_OFFLINE as a user sets it (huggingface_hub reads it at import: re-read it)."""
    import huggingface_hub.constants as hf_constants

    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    importlib.reload(hf_constants)

"""Where weights come from: local folders, the Hugging Face Hub or any URL; downloaded once, verified, cached.

A *source* is what a user writes for ``--weights``:

- a path; a bare file name that is not in the working folder is also looked for in the search folders;
- ``hf://owner/repo/path/in/repo.pth[@revision]``, a file on the Hugging Face Hub (a huggingface.co
  ``.../resolve/<revision>/<file>`` URL means the same);
- any other ``https://`` (or ``http://``) URL.

Official weights are asked for by file name (``SSTLarge_Plus_DF2K_X4.pth``) and found, in order: in the
search folders ($SST_WEIGHTS_DIR, the sst cache, ./checkpoints), as a copy already downloaded (no
network), else on the Hub. Which repository holds a file is not known in advance: the author's model
repositories are listed through the Hub API once and the one holding the file is recorded, pinned to its
commit, in ``sources.json`` in the sst cache. That map is plain data: edit it, or point
$SST_WEIGHTS_SOURCES at a JSON file of your own (``{"<file name>": "<source>"}``), which wins.

Hub files live in the standard Hugging Face cache, so HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT
and tokens work as with any Hugging Face tool; URL downloads live in ``<sst cache>/downloads/<hash of
the URL>/``, so two URLs ending in the same file name never share a file. Every download's size and
sha256 are recorded in ``verified.json`` (first checked against a given sha256, or the Hub's own LFS
sha256) and checked again at each load; a copy that fails is downloaded again, or refused when offline.
Downloads write to a temporary file renamed into place only when complete, and show a progress bar.

Imports no torch; ``huggingface_hub`` is imported only when a Hub source is used.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import SSTError
from ..io.files import atomic_write, atomic_write_text, file_sha256, reason
from .registry import HUB_AUTHOR, HUB_COLLECTION_URL, OfficialFile

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


# ------------------------------------------------------------------------------------------ folders
def user_cache_dir() -> Path:
    """sst's own cache: URL downloads and the two small JSON records (not the Hub's files)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sst"


def search_dirs() -> list[Path]:
    """Folders where a checkpoint file put there by hand is found by its name."""
    dirs = []
    if os.environ.get("SST_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["SST_WEIGHTS_DIR"]).expanduser())
    dirs += [user_cache_dir(), Path.cwd() / "checkpoints"]
    return dirs


def find_local(name: str) -> Path | None:
    """The first file called ``name`` in the search folders."""
    return next((d / name for d in search_dirs() if (d / name).is_file()), None)


def search_dirs_text() -> str:
    """The search folders in words: '$SST_WEIGHTS_DIR (not set), ~/.cache/sst or ./checkpoints'."""
    names = [str(d) for d in search_dirs()]
    if os.environ.get("SST_WEIGHTS_DIR"):
        names[0] += " ($SST_WEIGHTS_DIR)"
    else:
        names.insert(0, "$SST_WEIGHTS_DIR (not set)")
    return ", ".join(names[:-1]) + " or " + names[-1]


# ------------------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class HubFile:
    """A file on the Hugging Face Hub; ``revision`` None means the default branch."""

    repo_id: str
    filename: str
    revision: str | None = None
    repo_type: str = "model"  # or "dataset" (benchmark sets)

    def __str__(self) -> str:
        kind = "" if self.repo_type == "model" else f"{self.repo_type}s/"  # hf://datasets/owner/name/...
        return f"hf://{kind}{self.repo_id}/{self.filename}" + (f"@{self.revision}" if self.revision else "")

    @property
    def name(self) -> str:
        return PurePosixPath(self.filename).name

    def at(self, revision: str) -> HubFile:
        return HubFile(self.repo_id, self.filename, revision, self.repo_type)


def parse_hf(source: str) -> HubFile:
    """``hf://owner/repo/path/file.pth[@revision]`` -> HubFile; SSTError for anything else."""
    rest, at, revision = source.removeprefix("hf://").partition("@")
    parts = rest.split("/")
    if not source.startswith("hf://") or len(parts) < 3 or "" in parts or (at and not revision):
        raise SSTError(f"'{source}' is not a Hub file; write hf://owner/repo/file.pth (optionally @revision).")
    return HubFile("/".join(parts[:2]), "/".join(parts[2:]), revision or None)


def _hub_file_from_url(url: str) -> HubFile | None:
    """A Hub download URL (``<endpoint>/owner/repo/resolve/<rev>/<file>``) as a HubFile, so it uses the Hub cache."""
    from huggingface_hub import constants

    parsed = urllib.parse.urlparse(url)
    hosts = {"huggingface.co", urllib.parse.urlparse(constants.ENDPOINT).netloc}
    m = re.fullmatch(r"/([^/]+/[^/]+)/(?:resolve|blob)/([^/]+)/(.+)", urllib.parse.unquote(parsed.path))
    if parsed.netloc not in hosts or m is None:
        return None
    return HubFile(m.group(1), m.group(3), m.group(2))


# ------------------------------------------------------------------------------------------ records
def sources_path() -> Path:
    return user_cache_dir() / "sources.json"


def verified_path() -> Path:
    return user_cache_dir() / "verified.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SSTError(f"{path} is not a readable JSON map ({reason(exc)}); fix or delete it.") from None
    if not isinstance(data, dict):
        raise SSTError(f"{path} should hold a JSON object; fix or delete it.")
    return data


def _update_json(path: Path, key: str, value: Any) -> None:
    data = _read_json(path)
    data[key] = value
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def known_source(name: str) -> str | None:
    """The recorded source of official file ``name``: $SST_WEIGHTS_SOURCES first, then sources.json."""
    maps = [sources_path()]
    if os.environ.get("SST_WEIGHTS_SOURCES"):
        mine = Path(os.environ["SST_WEIGHTS_SOURCES"]).expanduser()
        if not mine.is_file():
            raise SSTError(f"$SST_WEIGHTS_SOURCES points to {mine}, which does not exist.")
        maps.insert(0, mine)
    for path in maps:
        value = _read_json(path).get(name)
        if value is not None:
            if not isinstance(value, str):
                raise SSTError(f"{path}: the source of {name} should be a string such as hf://owner/repo/{name}.")
            return value
    return None


def _check(path: Path, key: str, sha256: str | None = None, lfs_sha256: str | None = None) -> str | None:
    """None when ``path`` is what ``key`` gave before (size, sha256) and matches ``sha256``; else what is wrong.
    A first sighting is checked against ``sha256`` or the Hub's ``lfs_sha256`` and recorded."""
    record = _read_json(verified_path()).get(key)
    size = path.stat().st_size
    if isinstance(record, dict) and record.get("size") not in (None, size):
        return f"it has {size:,} bytes, not the {record['size']:,} recorded on first download"
    digest = file_sha256(path)
    want = sha256 or (record or {}).get("sha256") or lfs_sha256
    if want and digest != want.lower():
        return f"its sha256 is {digest}, not the expected {want.lower()}"
    if not isinstance(record, dict) or record.get("sha256") != digest:
        _update_json(verified_path(), key, {"sha256": digest, "size": size})
    return None


def _verify_local(path: Path, sha256: str | None) -> Path:
    """A file put here by hand: checked against the sha256 the user gave, if any (nothing was recorded)."""
    if sha256 and (digest := file_sha256(path)) != sha256.lower():
        raise SSTError(f"{path} has sha256 {digest}, not the expected {sha256.lower()}.")
    return path


# -------------------------------------------------------------------------------------- the Hub
def hub_offline() -> bool:
    """HF_HUB_OFFLINE, as huggingface_hub reads it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


class HubError(SSTError):
    """A Hub call failed; ``why`` is the reason in a few words."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"could not get {what} from the Hugging Face Hub ({why}).")
        self.why = why


def _hub_failure(exc: BaseException, what: str) -> HubError:
    """One sentence for a failed Hub call (huggingface_hub's own errors are several lines)."""
    from huggingface_hub import constants, errors

    if isinstance(exc, errors.OfflineModeIsEnabled):
        why = "HF_HUB_OFFLINE is set"
    elif isinstance(exc, errors.LocalEntryNotFoundError) or isinstance(exc, ConnectionError | TimeoutError) or any(
            word in type(exc).__name__ for word in ("Connect", "Timeout")):
        why = f"{constants.ENDPOINT} could not be reached"
    elif isinstance(exc, errors.GatedRepoError) or getattr(getattr(exc, "response", None), "status_code", 0) in (401, 403):
        why = "the repository needs a token (set HF_TOKEN or run `hf auth login`)"
    elif isinstance(exc, errors.RepositoryNotFoundError):
        why = "the repository does not exist or is private (a token may be needed: HF_TOKEN)"
    elif isinstance(exc, errors.RevisionNotFoundError):
        why = "that revision does not exist"
    elif isinstance(exc, errors.EntryNotFoundError) and not isinstance(exc, errors.LocalEntryNotFoundError):
        why = "the repository has no such file"
    else:
        why = reason(exc)
    return HubError(what, why)


def _behind_proxy(scheme: str, host: str) -> bool:
    """Whether requests to ``host`` go through a proxy, which resolves the name for us: the environment's
    proxy variables, or the system's settings on Windows and macOS, as httpx (huggingface_hub's client)
    reads them through urllib."""
    proxies = urllib.request.getproxies()
    return bool(proxies.get(scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host)


def _endpoint_unresolvable() -> str | None:
    """Why the Hub cannot be reached, found at once: its host name does not resolve (no network) and no
    proxy resolves it for us. None when a request may succeed. Without this check huggingface_hub retries
    a failed call five times over ~23 s, printing a warning each time, before failing the same way."""
    from huggingface_hub import constants

    url = urllib.parse.urlsplit(constants.ENDPOINT)
    host = url.hostname
    if not host or _behind_proxy(url.scheme, host):
        return None
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return f"{constants.ENDPOINT} could not be reached: the name {host} does not resolve"
    return None


def hub_unavailable() -> str | None:
    """Why the Hub cannot be asked now, found without a request (HF_HUB_OFFLINE, or a host name that does not
    resolve); None when a request may succeed."""
    return "HF_HUB_OFFLINE is set" if hub_offline() else _endpoint_unresolvable()


def _blob_sha256(path: str) -> str | None:
    """The Hub stores LFS files under their sha256 (the cache's blob name); None when not visible."""
    name = Path(os.path.realpath(path)).name
    return name if _HEX64.fullmatch(name) else None


def _commit_of(path: str, hub: HubFile) -> str | None:
    """The commit a cached file belongs to: the cache keeps files at .../snapshots/<commit>/<filename>."""
    parts = Path(path).parts
    commit = parts[-len(PurePosixPath(hub.filename).parts) - 1]
    return commit if _HEX40.fullmatch(commit) else None


def _download_hub(hub: HubFile, force: bool = False) -> str:
    from huggingface_hub import hf_hub_download

    try:
        return str(hf_hub_download(hub.repo_id, hub.filename, revision=hub.revision, repo_type=hub.repo_type,
                                   force_download=force))
    except Exception as exc:  # noqa: BLE001 - network, HTTP and cache errors come in many types
        raise _hub_failure(exc, str(hub)) from None


def fetch_hub(hub: HubFile, sha256: str | None = None) -> Path:
    """A Hub file from the Hugging Face cache, downloaded first when absent (a pinned commit that is
    cached makes no HTTP request); verified, and downloaded again when the cached copy is damaged."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(hub.repo_id, hub.filename, revision=hub.revision, repo_type=hub.repo_type)
    cached = hit if isinstance(hit, str) else None
    if cached and _HEX40.fullmatch(hub.revision or ""):
        path = cached
    elif not hub_offline() and (why := _endpoint_unresolvable()):
        if cached is None:
            raise HubError(str(hub), why)
        path = cached  # the branch's last known copy, as huggingface_hub falls back to when offline
    else:
        path = _download_hub(hub)
    key = str(hub.at(_commit_of(path, hub) or hub.revision or "main"))
    problem = _check(Path(path), key, sha256, _blob_sha256(path))
    if problem is None:
        return Path(path)
    if hub_offline():
        raise SSTError(f"the cached copy of {hub} at {path} is damaged ({problem}) and HF_HUB_OFFLINE is set; "
                       "unset it to download the file again.")
    if why := _endpoint_unresolvable():
        raise SSTError(f"the cached copy of {hub} at {path} is damaged ({problem}) and {why}.")
    path = _download_hub(hub.at(key.rsplit("@", 1)[1]), force=True)
    problem = _check(Path(path), key, sha256, _blob_sha256(path))
    if problem:
        raise SSTError(f"{hub} was downloaded again and still fails verification ({problem}).")
    return Path(path)


def discover(name: str) -> HubFile:
    """Find the repository holding official file ``name`` among the author's models (Hub API) and
    record it, pinned to the commit listed, in sources.json."""
    from huggingface_hub import HfApi

    if not hub_offline() and (why := _endpoint_unresolvable()):
        raise HubError(f"the list of {HUB_AUTHOR}'s models", why)
    try:
        models = list(HfApi().list_models(author=HUB_AUTHOR, expand=["siblings", "sha"]))
    except Exception as exc:  # noqa: BLE001
        raise _hub_failure(exc, f"the list of {HUB_AUTHOR}'s models") from None
    hits = sorted((m.id, s.rfilename, m.sha) for m in models for s in (m.siblings or [])
                  if PurePosixPath(s.rfilename).name == name)
    if not hits:
        raise SSTError(f"{name} is in none of {HUB_AUTHOR}'s {len(models)} model repositories on the Hub; see "
                       f"{HUB_COLLECTION_URL}, and pass --weights hf://owner/repo/{name} or a downloaded file.")
    repo_id, filename, sha = hits[0]
    hub = HubFile(repo_id, filename, sha)
    _update_json(sources_path(), name, str(hub))
    return hub


def official_source(name: str) -> HubFile | None:
    """Where official file ``name`` is on the Hub, as recorded (no network); None when not recorded."""
    source = known_source(name)
    if source is None:
        return None
    if source.startswith("hf://"):
        return parse_hf(source)
    hub = _hub_file_from_url(source) if source.startswith(("http://", "https://")) else None
    if hub is None:
        raise SSTError(f"the source recorded for {name} ({source}) is not a Hub file; use hf://owner/repo/file.")
    return hub


def cached_official(file: OfficialFile) -> Path | None:
    """Official weights already here: in a search folder, or downloaded before (no network, not verified)."""
    from huggingface_hub import try_to_load_from_cache

    local = find_local(file.name)
    if local is not None:
        return local
    hub = official_source(file.name)
    if hub is None:
        return None
    hit = try_to_load_from_cache(hub.repo_id, hub.filename, revision=hub.revision)
    return Path(hit) if isinstance(hit, str) else None


def not_available_message(file: OfficialFile, why: str, given: bool = False) -> str:
    """One sentence: the file, why it cannot be had now, the collection, and where a manual download goes.

    ``given``: the user named the file itself (``--weights NAME``), so pointing at ``--weights`` would be no
    help; say instead that no file of that name is here and why the official one could not be fetched."""
    what = file.described
    manual = f"download it from {HUB_COLLECTION_URL} into {search_dirs_text()}"
    if given:
        return (f"weights file {file.name} does not exist in {Path.cwd()} or {search_dirs_text()}, and the official "
                f"file of that name ({what}) could not be fetched because {why}; {manual}.")
    return f"{file.name} ({what}) is not here and {why}; {manual}, or pass --weights FILE."


def fetch_official(file: OfficialFile, sha256: str | None = None, given: bool = False) -> Path:
    """Official weights by name: a file in the search folders, else the Hugging Face cache, else downloaded
    from the repository the Hub lists for it. ``given``: the name came from ``--weights`` (see
    :func:`not_available_message`)."""
    local = find_local(file.name)
    if local is not None:
        return _verify_local(local, sha256)
    hub = official_source(file.name)
    if hub_offline() and (hub is None or cached_official(file) is None):
        raise SSTError(not_available_message(file, "HF_HUB_OFFLINE is set (offline)", given))
    try:
        return fetch_hub(hub or discover(file.name), sha256)
    except HubError as exc:
        raise SSTError(not_available_message(file, f"the Hub could not provide it ({exc.why})", given)) from None


# ------------------------------------------------------------------------------------------- URLs
def url_cache_path(url: str) -> Path:
    """Where a URL's download is kept: keyed by the whole URL, named like its last path part."""
    name = PurePosixPath(urllib.parse.urlparse(url).path).name or "weights.pth"
    return user_cache_dir() / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:16] / name


def _download_url(url: str, target: Path) -> None:
    from huggingface_hub.utils import tqdm

    def write(tmp: Path) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": "sst-cli"})
        with urllib.request.urlopen(request, timeout=60) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, leave=False) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
            if total is not None and out.tell() != total:
                raise http.client.IncompleteRead(b"", total - out.tell())

    try:
        atomic_write(target, write)
    except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
        detail = "the connection closed early" if isinstance(exc, http.client.IncompleteRead) else reason(exc)
        raise SSTError(f"could not download {url} ({detail}); nothing was kept.") from None


def fetch_url(url: str, sha256: str | None = None) -> Path:
    """``url`` downloaded once into the sst cache (Hub URLs into the Hub cache), verified at every load."""
    hub = _hub_file_from_url(url)
    if hub is not None:
        return fetch_hub(hub, sha256)
    target = url_cache_path(url)
    if target.is_file():
        if _check(target, url, sha256) is None:
            return target
        target.unlink()  # damaged since: fetch it again
    _download_url(url, target)
    problem = _check(target, url, sha256)
    if problem is not None:
        target.unlink()
        raise SSTError(f"{url} does not match ({problem}); the download was removed (if the file there changed on "
                       f"purpose, delete its entry in {verified_path()}).")
    return target


def fetch(source: str, sha256: str | None = None) -> Path:
    """A local file for ``source``: a path, hf://owner/repo/file[@rev], a URL, or an official file name."""
    from .registry import official_file

    if source.startswith("hf://"):
        return fetch_hub(parse_hf(source), sha256)
    if source.startswith(("http://", "https://")):
        return fetch_url(source, sha256)
    path = Path(source).expanduser()
    if path.is_file():
        return _verify_local(path, sha256)
    if len(path.parts) == 1:  # a bare name: the search folders, then an official name on the Hub
        found = find_local(path.name)
        if found is not None:
            return _verify_local(found, sha256)
        official = official_file(path.name)
        if official is not None and official.name == path.name:
            return fetch_official(official, sha256, given=True)
    raise SSTError(f"weights file {path} does not exist (looked in {Path.cwd()}"
                   + (f" and {search_dirs_text()}" if len(path.parts) == 1 else "")
                   + "); pass a file, an https:// URL or hf://owner/repo/file, or --model NAME to download "
                   "official weights.")

"""Official weights by name and weights by URL, against a local stand-in for the Hugging Face Hub
(tests/hub_server.py): discovery through the Hub API, download, cache hits without HTTP, verification
of damaged copies, interrupted downloads, the offline message, user overrides, and a cache keyed by
source rather than by file name."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hub_server import COMMIT, FakeHub, fake_hub, set_offline  # noqa: F401 - fake_hub is a fixture
from sst_cli.errors import SSTError
from sst_cli.model import hub
from sst_cli.model.registry import HUB_COLLECTION_URL, create_model, get_variant, official_file_for
from sst_cli.upscale.upscaler import load_upscaler

NAME = "SSTlight_Plus_DIV2K_X4.pth"
REPO = "dslisleedh/SST-Light"
IN_REPO = f"x4/{NAME}"  # in a sub-folder, as a repository may keep it
OFFICIAL = official_file_for(get_variant("sst-light+"), 4)


def _one_sentence(msg: str) -> None:
    assert "\n" not in msg and msg.endswith(".") and "Traceback" not in msg, msg


@pytest.fixture(scope="module")
def weights_bytes() -> bytes:
    """A generated sst-light+ x4 BasicSR .pth standing in for the published file."""
    torch.manual_seed(3)
    buffer = io.BytesIO()
    torch.save({"params_ema": create_model("sst-light+", 4).state_dict()}, buffer)
    return buffer.getvalue()


@pytest.fixture
def hub_with_weights(fake_hub: FakeHub, weights_bytes: bytes) -> FakeHub:  # noqa: F811
    fake_hub.repos = {
        "dslisleedh/unrelated-project": {"README.md": b"# not SST"},
        REPO: {"README.md": b"# SST light", IN_REPO: weights_bytes, "SSTlight_DIV2K_X4.pth": b"other"},
        "someone-else/SST-copy": {NAME: b"not the author's"},  # another owner: never looked at
    }
    return fake_hub


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())


# ------------------------------------------------------------------------------------------ the Hub
def test_discovery_download_and_cache_hit(hub_with_weights: FakeHub, weights_bytes: bytes, tmp_path: Path) -> None:
    path = hub.fetch_official(OFFICIAL)
    assert path.read_bytes() == weights_bytes and path.name == NAME
    assert str(path).startswith(str(tmp_path / "hf" / "hub"))  # the standard Hugging Face cache, under HF_HOME
    asked = hub_with_weights.requests
    assert asked[0].startswith("GET /api/models?author=dslisleedh")
    assert [r.split(" ")[0] for r in asked[1:]] == ["HEAD", "GET"]
    assert all(f"/{REPO}/resolve/{COMMIT}/{IN_REPO}" in r for r in asked[1:])  # pinned to the listed commit
    # The resolution is recorded as data a user can read and edit ...
    sources = json.loads((tmp_path / "cache" / "sst" / "sources.json").read_text())
    assert sources == {NAME: f"hf://{REPO}/{IN_REPO}@{COMMIT}"}
    # ... and so are the size and sha256, checked at every later load.
    verified = json.loads((tmp_path / "cache" / "sst" / "verified.json").read_text())
    assert verified == {f"hf://{REPO}/{IN_REPO}@{COMMIT}": {"sha256": hashlib.sha256(weights_bytes).hexdigest(),
                                                           "size": len(weights_bytes)}}
    asked.clear()
    assert hub.fetch_official(OFFICIAL) == path
    assert asked == []  # the second time: no HTTP request at all
    assert hub.cached_official(OFFICIAL) == path


def test_load_upscaler_by_name_equals_the_same_file_by_path(hub_with_weights: FakeHub, weights_bytes: bytes,
                                                            tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    by_name = load_upscaler("sst-light+", 4, device="cpu")
    assert by_name.name == "sst-light+" and by_name.scale == 4 and by_name.source.endswith(NAME)
    hub_with_weights.requests.clear()
    again = load_upscaler("sst-light+", 4, device="cpu")
    assert hub_with_weights.requests == []
    local = tmp_path / "manual" / NAME
    local.parent.mkdir()
    local.write_bytes(weights_bytes)
    by_file = load_upscaler(weights=str(local), device="cpu")
    assert by_file.name == "sst-light+"  # decided by the official file name
    renamed = tmp_path / "manual" / "renamed.pth"
    renamed.write_bytes(weights_bytes)
    by_model = load_upscaler("sst-light+", weights=str(renamed), device="cpu")
    out = by_name(image)
    assert out.shape == (80, 96, 3) and np.array_equal(by_file(image), out)
    for other in (again, by_model):  # the same tensors in the same network give the same pixels
        windows = tuple(get_variant("sst-light+").network_g(4)["window_sizes"])
        assert other.model.window_sizes == by_name.model.window_sizes == windows
        assert all(torch.equal(a, b) for a, b in zip(other.model.state_dict().values(),
                                                     by_name.model.state_dict().values(), strict=True))


def test_a_damaged_cached_copy_is_downloaded_again(hub_with_weights: FakeHub, weights_bytes: bytes,
                                                   monkeypatch) -> None:
    path = hub.fetch_official(OFFICIAL)
    blob = Path(os.path.realpath(path))
    blob.write_bytes(bytes(len(weights_bytes)))  # same size, other bytes: only the sha256 can tell
    hub_with_weights.requests.clear()
    assert hub.fetch_official(OFFICIAL).read_bytes() == weights_bytes
    assert [r.split(" ")[0] for r in hub_with_weights.requests] == ["HEAD", "GET"]
    # Offline, a damaged copy is refused in one sentence rather than loaded.
    Path(os.path.realpath(path)).write_bytes(weights_bytes[:100])
    set_offline(monkeypatch)
    with pytest.raises(SSTError) as info:
        hub.fetch_official(OFFICIAL)
    msg = str(info.value)
    _one_sentence(msg)
    assert "damaged" in msg and "100 bytes" in msg and "HF_HUB_OFFLINE" in msg


def test_an_interrupted_download_leaves_nothing(hub_with_weights: FakeHub, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda s: None)  # huggingface_hub resumes 5 times, 1 s apart
    hub_with_weights.drop_after = 5000
    with pytest.raises(SSTError) as info:
        hub.fetch_official(OFFICIAL)
    msg = str(info.value)
    _one_sentence(msg)
    assert NAME in msg and HUB_COLLECTION_URL in msg
    left = [p for p in _files_under(tmp_path / "hf") if ".locks" not in p.parts and p.name != "CACHEDIR.TAG"]
    assert left == [], left
    assert hub.cached_official(OFFICIAL) is None
    assert not (tmp_path / "cache" / "sst" / "verified.json").exists()
    hub_with_weights.drop_after = None  # the next try succeeds
    assert hub.fetch_official(OFFICIAL).is_file()


def test_offline_with_nothing_cached_is_one_sentence(hub_with_weights: FakeHub, monkeypatch, tmp_path: Path) -> None:
    set_offline(monkeypatch)
    with pytest.raises(SSTError) as info:
        load_upscaler("sst-light+", 4, device="cpu")
    msg = str(info.value)
    _one_sentence(msg)
    assert NAME in msg and HUB_COLLECTION_URL in msg and "HF_HUB_OFFLINE" in msg
    assert "$SST_WEIGHTS_DIR" in msg and str(tmp_path / "cache" / "sst") in msg and "checkpoints" in msg
    assert hub_with_weights.requests == []


def test_offline_weights_by_official_name_says_the_file_is_missing(hub_with_weights: FakeHub, monkeypatch,
                                                                   tmp_path: Path) -> None:
    """Issue 23: `--weights <official name>` offline: the user did pass --weights, so no "pass --weights FILE"."""
    set_offline(monkeypatch)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SSTError) as info:
        load_upscaler(weights=NAME, device="cpu")
    msg = str(info.value)
    _one_sentence(msg)
    assert f"weights file {NAME} does not exist in {tmp_path}" in msg and "checkpoints" in msg
    assert "could not be fetched because HF_HUB_OFFLINE is set (offline)" in msg and HUB_COLLECTION_URL in msg
    assert "--weights" not in msg and hub_with_weights.requests == []


def test_offline_with_a_cached_copy_works(hub_with_weights: FakeHub, monkeypatch) -> None:
    path = hub.fetch_official(OFFICIAL)
    set_offline(monkeypatch)
    hub_with_weights.requests.clear()
    assert hub.fetch_official(OFFICIAL) == path and hub_with_weights.requests == []


def test_an_unreachable_hub_says_so(fake_hub: FakeHub, monkeypatch) -> None:  # noqa: F811
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    monkeypatch.setattr(time, "sleep", lambda s: None)  # huggingface_hub retries a listing 5 times, 1-8 s apart
    with pytest.raises(SSTError) as info:
        hub.fetch_official(OFFICIAL)
    msg = str(info.value)
    _one_sentence(msg)
    assert NAME in msg and HUB_COLLECTION_URL in msg and "could not be reached" in msg


def _no_network(monkeypatch) -> None:
    """A machine without network: the Hub's name does not resolve, no proxy; a retry would fail the test."""
    import socket

    import huggingface_hub.constants as hf_constants

    def no_dns(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(hub.urllib.request, "getproxies", lambda: {k[:-6].lower(): v for k, v in os.environ.items()
                                                                    if k.lower().endswith("_proxy") and v})
    monkeypatch.setattr(hf_constants, "ENDPOINT", "https://hub.example")
    monkeypatch.setattr(hub.socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail("retried a Hub call that cannot succeed"))


def test_no_network_fails_at_once(fake_hub: FakeHub, monkeypatch) -> None:  # noqa: F811
    _no_network(monkeypatch)
    for source in (lambda: hub.fetch_official(OFFICIAL), lambda: hub.fetch(f"hf://{REPO}/{IN_REPO}")):
        with pytest.raises(SSTError) as info:
            source()
        _one_sentence(str(info.value))
        assert "https://hub.example could not be reached: the name hub.example does not resolve" in str(info.value)
    assert fake_hub.requests == []


def test_no_network_uses_a_cached_copy(hub_with_weights: FakeHub, monkeypatch) -> None:
    official = hub.fetch_official(OFFICIAL)  # pinned to the listed commit
    branch = hub.fetch(f"hf://{REPO}/{IN_REPO}")  # main, whatever it points to
    _no_network(monkeypatch)
    hub_with_weights.requests.clear()
    assert hub.fetch_official(OFFICIAL) == official
    assert hub.fetch(f"hf://{REPO}/{IN_REPO}") == branch
    assert hub_with_weights.requests == []


def test_a_proxy_may_resolve_what_we_cannot(monkeypatch) -> None:
    _no_network(monkeypatch)  # the endpoint is https://hub.example
    assert hub._endpoint_unresolvable() is not None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")  # for http:// only
    assert hub._endpoint_unresolvable() is not None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub._endpoint_unresolvable() is None
    monkeypatch.setenv("NO_PROXY", "hub.example")  # bypassed: we resolve the name ourselves again
    assert hub._endpoint_unresolvable() is not None


def test_a_file_no_repository_holds(hub_with_weights: FakeHub) -> None:
    missing = official_file_for(get_variant("sst-xl+"), 2)
    with pytest.raises(SSTError) as info:
        hub.fetch_official(missing)
    msg = str(info.value)
    _one_sentence(msg)
    assert "SSTXL_Plus_DFLIP_X2.pth is in none of dslisleedh's 2 model repositories" in msg


def test_the_resolution_can_be_overridden(hub_with_weights: FakeHub, tmp_path: Path, monkeypatch) -> None:
    mine = tmp_path / "my-sources.json"
    mine.write_text(json.dumps({NAME: f"hf://{REPO}/{IN_REPO}@main"}))
    monkeypatch.setenv("SST_WEIGHTS_SOURCES", str(mine))
    assert hub.fetch_official(OFFICIAL).is_file()
    assert not any("/api/models" in r for r in hub_with_weights.requests)  # no discovery needed
    assert any(f"/resolve/main/{IN_REPO}" in r for r in hub_with_weights.requests)
    mine.write_text(json.dumps({NAME: 7}))
    with pytest.raises(SSTError, match="should be a string"):
        hub.fetch_official(OFFICIAL)


def test_a_manual_download_in_the_weights_dir_needs_no_network(hub_with_weights: FakeHub, tmp_path: Path,
                                                             monkeypatch) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / NAME).write_bytes(b"x")
    monkeypatch.setenv("SST_WEIGHTS_DIR", str(folder))
    assert hub.fetch_official(OFFICIAL) == folder / NAME and hub_with_weights.requests == []


def test_hub_sources_by_hf_uri_url_and_official_name(hub_with_weights: FakeHub, weights_bytes: bytes) -> None:
    by_uri = hub.fetch(f"hf://{REPO}/{IN_REPO}")
    assert by_uri.read_bytes() == weights_bytes
    assert hub.fetch(f"{hub_with_weights.url}/{REPO}/resolve/main/{IN_REPO}") == by_uri  # the same Hub cache entry
    assert hub.fetch(NAME).read_bytes() == weights_bytes  # a bare official name: found on the Hub
    with pytest.raises(SSTError, match="no such file"):
        hub.fetch(f"hf://{REPO}/nope.pth")
    with pytest.raises(SSTError, match="does not exist or is private"):
        hub.fetch("hf://dslisleedh/missing-repo/x.pth")


@pytest.mark.parametrize("bad", ["hf://owner/file.pth", "hf://owner//repo/f.pth", "hf://o/r/f.pth@"])
def test_malformed_hub_sources(bad: str) -> None:
    with pytest.raises(SSTError, match="hf://owner/repo/file.pth"):
        hub.parse_hf(bad)
    assert hub.parse_hf("hf://o/r/a/b.pth@v1") == hub.HubFile("o/r", "a/b.pth", "v1")


# -------------------------------------------------------------------------------------------- URLs
def test_urls_ending_in_the_same_name_are_cached_apart(fake_hub: FakeHub) -> None:  # noqa: F811
    fake_hub.plain = {"/a/weights.pth": b"first file", "/b/weights.pth": b"second file"}
    first = hub.fetch(f"{fake_hub.url}/a/weights.pth")
    second = hub.fetch(f"{fake_hub.url}/b/weights.pth")
    assert first != second and first.name == second.name == "weights.pth"
    assert first.read_bytes() == b"first file" and second.read_bytes() == b"second file"
    fake_hub.requests.clear()
    assert hub.fetch(f"{fake_hub.url}/b/weights.pth").read_bytes() == b"second file"
    assert fake_hub.requests == []


def test_url_sha256_is_checked_and_a_bad_download_removed(fake_hub: FakeHub, tmp_path: Path) -> None:  # noqa: F811
    fake_hub.plain = {"/w.pth": b"not what you expected"}
    url = f"{fake_hub.url}/w.pth"
    with pytest.raises(SSTError, match="sha256") as info:
        hub.fetch(url, sha256="0" * 64)
    _one_sentence(str(info.value))
    assert _files_under(tmp_path / "cache" / "sst" / "downloads") == []
    good = hashlib.sha256(b"not what you expected").hexdigest()
    path = hub.fetch(url, sha256=good.upper())
    path.write_bytes(b"not what you exp3cted")  # damaged later: found, and fetched again
    fake_hub.requests.clear()
    assert hub.fetch(url).read_bytes() == b"not what you expected" and len(fake_hub.requests) == 1


def test_url_interrupted_or_missing_leaves_nothing(fake_hub: FakeHub, tmp_path: Path) -> None:  # noqa: F811
    fake_hub.plain = {"/big.pth": bytes(200_000)}
    fake_hub.drop_after = 1000
    with pytest.raises(SSTError, match="could not download .*closed early.*nothing was kept") as info:
        hub.fetch(f"{fake_hub.url}/big.pth")
    _one_sentence(str(info.value))
    with pytest.raises(SSTError, match="could not download .*404"):
        hub.fetch(f"{fake_hub.url}/missing.pth")
    assert _files_under(tmp_path / "cache" / "sst") == []


def test_a_missing_local_file_says_where_sst_looked(fake_hub: FakeHub, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(SSTError) as info:
        load_upscaler(weights="my-weights.pth", device="cpu")
    msg = str(info.value)
    _one_sentence(msg)
    assert "my-weights.pth does not exist" in msg and str(tmp_path / "cache" / "sst") in msg
    assert "--model NAME" in msg and fake_hub.requests == []


# -------------------------------------------------------------------------------- through the CLI
def test_cli_upscale_by_name_downloads_once_and_equals_the_file(hub_with_weights: FakeHub, weights_bytes: bytes,
                                                              tmp_path: Path) -> None:
    from PIL import Image

    from sst_cli.cli import main

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    args = ["--model", "sst-light+", "--scale", "4", "--device", "cpu"]
    assert main(["upscale", "in.png", "first", *args, "--json", "first.json"]) == 0
    assert len(hub_with_weights.file_requests()) == 2  # HEAD + GET, once
    assert json.loads((tmp_path / "first.json").read_text())["model"] == "sst-light+"
    hub_with_weights.requests.clear()
    assert main(["upscale", "in.png", "second", *args]) == 0
    assert hub_with_weights.requests == []  # the second run makes no HTTP request
    (tmp_path / NAME).write_bytes(weights_bytes)
    assert main(["upscale", "in.png", "by-file", "--weights", NAME, "--device", "cpu"]) == 0
    first = np.array(Image.open(tmp_path / "first" / "in.png"))
    assert first.shape == (48, 40, 3)
    for other in ("second", "by-file"):
        assert np.array_equal(np.array(Image.open(tmp_path / other / "in.png")), first), other


def test_cli_interrupted_download_writes_nothing(hub_with_weights: FakeHub, tmp_path: Path, monkeypatch,
                                                 capsys) -> None:
    from PIL import Image

    from sst_cli.cli import main

    monkeypatch.setattr(time, "sleep", lambda s: None)
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    hub_with_weights.drop_after = 100
    assert main(["upscale", "in.png", "out", "-m", "sst-light+", "-s", "4", "--device", "cpu"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    ours = err[err.index("error:"):]  # huggingface_hub logs its retries before it
    assert NAME in ours and HUB_COLLECTION_URL in ours and "Traceback" not in ours
    assert not (tmp_path / "out" / "in.png").exists()
    assert [p for p in _files_under(tmp_path / "hf") if ".locks" not in p.parts and p.name != "CACHEDIR.TAG"] == []


def test_a_given_sha256_checks_local_files_too(fake_hub: FakeHub, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "w.pth").write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    assert hub.fetch("w.pth", sha256=good) == Path("w.pth")
    with pytest.raises(SSTError, match="has sha256 .* not the expected 0000"):
        hub.fetch("w.pth", sha256="0" * 64)

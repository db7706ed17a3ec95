"""Benchmark sets by name (`sst eval --dataset NAME`, `sst datasets`): the catalog, downloads from a stand-in
for the Hugging Face Hub (tests/hub_server.py) serving a tiny set under a test-only catalog entry, verification
of the archive and of every image's pixels, the cache used without network, and the refusals."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import data_path
from hub_server import COMMIT, FakeHub, fake_hub, set_offline  # noqa: F401 - fake_hub is a fixture
from sst_cli.cli import main
from sst_cli.errors import SSTError
from sst_cli.evaluation import datasets, fetch
from sst_cli.evaluation.catalog import CATALOG, Benchmark, HubArchive
from sst_cli.evaluation.datasets import DATASETS, read_rgb_u8

REPO = "tester/Tiny"
ARCHIVE = "data/Tiny_HR.tar.gz"


def _one_sentence(msg: str) -> None:
    assert "\n" not in msg and msg.endswith(".") and ". " not in msg and "Traceback" not in msg, msg


def _images() -> dict[str, np.ndarray]:
    """Three small images: RGB, grey (eval reads it as three equal channels) and RGB with an odd size."""
    rng = np.random.default_rng(7)
    return {"im0": rng.integers(0, 256, (20, 18, 3), dtype=np.uint8),
            "im1": rng.integers(0, 256, (17, 23), dtype=np.uint8),
            "im2": rng.integers(0, 256, (16, 21, 3), dtype=np.uint8)}


def _pixels_as_documented(img: np.ndarray) -> str:
    """The catalog's pixel hash written out from its definition: sha256(b"HxWx3\\n" + uint8 RGB bytes)."""
    rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
    return hashlib.sha256(b"%dx%dx3\n" % rgb.shape[:2] + rgb.tobytes()).hexdigest()


def _archive(images: dict[str, np.ndarray], extra: dict[str, bytes] | None = None) -> bytes:
    """A tar.gz laid out as the Hub's archives: Tiny_HR/<stem>.png, plus any ``extra`` members."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        members = {f"Tiny_HR/{stem}.png": _png(img) for stem, img in images.items()} | (extra or {})
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _install_entry(monkeypatch: pytest.MonkeyPatch, archive: HubArchive | None) -> None:
    """Make "Tiny" a benchmark sst knows, with ``archive`` as its catalog source."""
    bench = Benchmark("Tiny", ("Tiny",), 3, "test only", "make it with the test", archive)
    monkeypatch.setitem(CATALOG, "Tiny", bench)
    monkeypatch.setitem(DATASETS, "Tiny", bench.aliases)
    monkeypatch.setitem(datasets._ALIASES, "tiny", "Tiny")


@pytest.fixture
def tiny(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> FakeHub:  # noqa: F811
    """The fake Hub serving the tiny set's archive at COMMIT, and a catalog entry recording both checks."""
    data = _archive(_images(), extra={"Tiny_HR/._im0.png": b"AppleDouble", "Tiny_HR/README.txt": b"hi"})
    fake_hub.repos[f"datasets/{REPO}"] = {ARCHIVE: data}
    pixels = {stem: _pixels_as_documented(img) for stem, img in _images().items()}
    _install_entry(monkeypatch, HubArchive(REPO, ARCHIVE, COMMIT, hashlib.sha256(data).hexdigest(), pixels, len(data)))
    return fake_hub


def _eval(*args: str) -> int:
    return main(["eval", "-m", "bicubic", "-s", "2", "--device", "cpu", *args])


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    return " ".join(err[err.index("error:"):].split()) if "error:" in err else err


def _hub_cache_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "hf").rglob("*") if (p.is_file() or p.is_symlink())
                  and ".locks" not in p.parts and p.name != "CACHEDIR.TAG")


# ------------------------------------------------------------------------------------------- catalog
def test_catalog_names_every_benchmark_and_records_only_well_formed_values() -> None:
    assert set(CATALOG) == set(DATASETS) >= {"Set5", "Set14", "B100", "Urban100", "Manga109"}
    assert datasets.canonical_name("BSD100") == "B100" and CATALOG["B100"].archive.repo_id == "eugenesiow/BSD100"
    for bench in CATALOG.values():
        a = bench.archive
        if a is None:
            assert "http" in bench.obtain
            continue
        assert a.revision is None or re.fullmatch(r"[0-9a-f]{40}", a.revision)
        assert a.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", a.sha256)
        assert a.pixels is None or all(re.fullmatch(r"[0-9a-f]{64}", v) for v in a.pixels.values())
        assert a.pixels is None or len(a.pixels) == bench.images
    assert CATALOG["Manga109"].archive is None


@pytest.mark.parametrize("name", ["Set5", "Set14"])
def test_set5_and_set14_pixels_are_those_of_the_test_copies(name: str) -> None:
    """The downloaded Set5/Set14 must equal tests/data pixel for pixel: the catalog records exactly these."""
    hr = data_path(name, "HR")
    ours = {p.stem: fetch.image_pixel_sha256(p) for p in sorted(hr.glob("*.png"))}
    assert ours == CATALOG[name].archive.pixels
    bridge = read_rgb_u8(data_path("Set14", "HR", "bridge.png"))[0] if name == "Set14" else None
    if bridge is not None:  # a grey image is hashed as eval reads it: three equal channels
        grey = np.array(Image.open(data_path("Set14", "HR", "bridge.png")))
        assert grey.ndim == 2 and np.array_equal(bridge[..., 1], grey)
        assert _pixels_as_documented(grey) == ours["bridge"]


def test_what_is_downloadable_now() -> None:
    assert fetch.not_recorded(CATALOG["Urban100"].archive)  # commit known, no check recorded yet: refused
    assert not any(fetch.not_recorded(CATALOG[n].archive) for n in ("Set5", "Set14", "B100"))


# ----------------------------------------------------------------------------------------- downloads
def test_eval_downloads_once_evaluates_and_then_needs_no_network(tiny: FakeHub, tmp_path: Path, monkeypatch) -> None:
    assert _eval("--dataset", "tiny", "--json", "first.json") == 0
    assert [r.split(" ")[0] for r in tiny.file_requests()] == ["HEAD", "GET"]
    assert all(f"/datasets/{REPO}/resolve/{COMMIT}/{ARCHIVE}" in r for r in tiny.requests)
    first = json.loads(Path("first.json").read_text())
    result = first["results"][0]
    assert result["dataset"] == "Tiny" and result["lr_source"] == "generated"  # shipped LR is never used
    assert [im["name"] for im in result["images"]] == ["im0", "im1", "im2"]
    cache = tmp_path / "cache" / "sst" / "datasets" / "Tiny"
    assert sorted(p.name for p in (cache / "HR").iterdir()) == ["im0.png", "im1.png", "im2.png"]  # images only
    # The same numbers as the same images in a local folder, which wins over the cache (no request).
    local = tmp_path / "mine" / "Tiny" / "HR"
    local.mkdir(parents=True)
    for stem, img in _images().items():
        Image.fromarray(img).save(local / f"{stem}.png")
    tiny.requests.clear()
    assert _eval("--dataset", "Tiny", "--data-root", str(tmp_path / "mine"), "--json", "local.json") == 0
    assert tiny.requests == []
    local_result = json.loads(Path("local.json").read_text())["results"][0]
    assert local_result["path"] == str(tmp_path / "mine" / "Tiny")
    assert [im["psnr_y"] for im in local_result["images"]] == [im["psnr_y"] for im in result["images"]]
    # The second run by name: no HTTP request at all, also with HF_HUB_OFFLINE.
    assert _eval("--dataset", "Tiny", "--json", "second.json") == 0
    set_offline(monkeypatch)
    assert _eval("--dataset", "Tiny", "--json", "third.json") == 0
    assert tiny.requests == []
    def scores(report: dict) -> list:
        return [(im["name"], im["psnr_y"], im["ssim_y"]) for im in report["results"][0]["images"]]

    for again in ("second.json", "third.json"):
        assert scores(json.loads(Path(again).read_text())) == scores(first)


def test_a_damaged_cached_copy_is_rebuilt_from_the_verified_archive(tiny: FakeHub, tmp_path: Path) -> None:
    path = fetch.fetch_dataset("Tiny")
    good = (path / "HR" / "im1.png").read_bytes()
    (path / "HR" / "im1.png").write_bytes(good[:-20])  # damaged after verification
    (path / "HR" / "extra.png").write_bytes(_png(np.zeros((4, 4, 3), np.uint8)))  # and a stray image
    assert fetch.cached("Tiny") is None
    tiny.requests.clear()
    assert fetch.fetch_dataset("Tiny") == path
    assert tiny.requests == []  # the archive at a pinned commit is still in the Hugging Face cache
    assert (path / "HR" / "im1.png").read_bytes() == good and not (path / "HR" / "extra.png").exists()
    assert fetch.cached("Tiny") == path


def test_a_tampered_archive_is_refused_by_name(tiny: FakeHub, tmp_path: Path, capsys) -> None:
    tiny.repos[f"datasets/{REPO}"][ARCHIVE] = _archive(_images()) + b"\0"  # not the recorded bytes
    assert _eval("--dataset", "Tiny") == 1
    err = _err(capsys)
    assert "Tiny_HR.tar.gz" in err and "sha256" in err and "nothing was kept" in err and "Traceback" not in err
    assert not (tmp_path / "cache" / "sst" / "datasets" / "Tiny").exists()
    assert _hub_cache_files(tmp_path) == []  # removed from the Hugging Face cache: never used later


def test_a_changed_image_is_refused_by_name_when_only_pixels_are_recorded(tiny: FakeHub, tmp_path: Path,
                                                                          monkeypatch, capsys) -> None:
    entry = CATALOG["Tiny"].archive
    monkeypatch.setitem(CATALOG, "Tiny", Benchmark("Tiny", ("Tiny",), 3, "t", "t", HubArchive(
        entry.repo_id, entry.filename, entry.revision, None, entry.pixels, 1)))
    images = _images()
    images["im1"] = images["im1"].copy()
    images["im1"][3, 4] ^= 1  # one grey level of one pixel
    tiny.repos[f"datasets/{REPO}"][ARCHIVE] = _archive(images)
    with pytest.raises(SSTError) as info:
        fetch.fetch_dataset("Tiny")
    msg = str(info.value)
    _one_sentence(msg)
    assert "im1.png differs from the recorded pixels" in msg and "im0" not in msg and "im2" not in msg
    assert not (tmp_path / "cache" / "sst" / "datasets").exists() or not any(
        (tmp_path / "cache" / "sst" / "datasets").iterdir())
    assert _hub_cache_files(tmp_path) == []
    # A missing image and an extra one are named too (on a fresh machine: the commit's archive bytes were recorded).
    (tmp_path / "cache" / "sst" / "verified.json").unlink()
    del images["im2"]
    images["im1"] = _images()["im1"]
    images["new"] = np.zeros((5, 5, 3), np.uint8)
    tiny.repos[f"datasets/{REPO}"][ARCHIVE] = _archive(images)
    with pytest.raises(SSTError, match=r"im2 missing; new\.png not in the recorded set"):
        fetch.fetch_dataset("Tiny")


def test_offline_without_a_cache_is_one_sentence_at_once(tiny: FakeHub, monkeypatch, capsys) -> None:
    import huggingface_hub.constants as hf_constants

    from sst_cli.model import hub

    def no_dns(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(hf_constants, "ENDPOINT", "https://hub.example")
    monkeypatch.setattr(hub.socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail("retried a Hub call that cannot succeed"))
    start = time.monotonic()
    assert _eval("--dataset", "Tiny") == 1
    assert time.monotonic() - start < 5
    err = _err(capsys)
    _one_sentence(err.removeprefix("error: "))
    assert "Tiny" in err and "hub.example does not resolve" in err and "--data-root" in err
    set_offline(monkeypatch)
    assert _eval("--dataset", "Tiny") == 1
    err = _err(capsys)
    _one_sentence(err.removeprefix("error: "))
    assert "HF_HUB_OFFLINE is set" in err
    assert tiny.requests == []


def test_manga109_and_unverified_sets_say_where_to_get_them(fake_hub: FakeHub, tmp_path: Path,  # noqa: F811
                                                            capsys) -> None:
    assert _eval("--dataset", "Manga109") == 1
    err = _err(capsys)
    _one_sentence(err.removeprefix("error: "))
    assert "http://www.manga109.org/en/download.html" in err and "--data-root" in err and "datasets" in err
    assert _eval("--dataset", "Urban100,Manga109") == 1  # all at once, still one sentence
    err = _err(capsys)
    _one_sentence(err.removeprefix("error: "))
    assert "2 datasets not found" in err and "Urban100 (sst does not download it yet" in err
    assert "https://huggingface.co/datasets/eugenesiow/Urban100" in err and "manga109.org" in err
    assert fake_hub.requests == []  # refused before any request


def test_a_set_without_a_recorded_commit_is_never_downloaded(tiny: FakeHub, monkeypatch) -> None:
    entry = CATALOG["Tiny"].archive
    _install_entry(monkeypatch, HubArchive(entry.repo_id, entry.filename, None, entry.sha256, entry.pixels, 1))
    with pytest.raises(SSTError, match="verification data is not recorded") as info:
        fetch.fetch_dataset("Tiny")
    _one_sentence(str(info.value))
    assert tiny.requests == []


# ------------------------------------------------------------------------------------------- archives
def test_unpack_writes_only_images_flat_by_name(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in {"set/a.png": b"a", "../../evil.png": b"e", "set/sub/b.PNG": b"b", "set/.c.png": b"c",
                           "set/notes.txt": b"n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("set/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(out.getvalue())
    written = fetch.unpack_images(archive, tmp_path / "out")
    assert [p.name for p in written] == ["a.png", "b.PNG", "evil.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.PNG", "evil.png"]
    assert not (tmp_path.parent / "evil.png").exists()
    (tmp_path / "bad.tar.gz").write_bytes(out.getvalue()[:50])
    with pytest.raises(SSTError, match="not a readable tar archive"):
        fetch.unpack_images(tmp_path / "bad.tar.gz", tmp_path / "out2")


def test_pixel_hash_is_the_documented_one() -> None:
    img = _images()["im0"]
    assert fetch.pixel_sha256(img) == _pixels_as_documented(img)
    with pytest.raises(ValueError):
        fetch.pixel_sha256(img.astype(np.uint16))


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_list_and_download(tiny: FakeHub, tmp_path: Path, capsys) -> None:
    assert main(["datasets"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert re.search(r"Tiny 3 0.0 MB test only yes no", out) and re.search(r"Urban100 100 135 MB CC BY 4.0 not yet no", out)
    assert main(["datasets", "download", "tiny"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Tiny: 3 images, verified, downloaded" in out
    tiny.requests.clear()
    assert main(["datasets", "download", "Tiny"]) == 0
    assert "already here" in capsys.readouterr().out and tiny.requests == []
    assert main(["datasets", "list"]) == 0
    assert re.search(r"Tiny 3 0.0 MB test only yes yes", " ".join(capsys.readouterr().out.split()))
    assert main(["datasets", "download", "Manga109", "Tiny"]) == 1
    err = _err(capsys)
    assert "Manga109 is not here" in err and "manga109.org" in err and "Manga109/HR" in err
    assert main(["datasets", "download", "Set6"]) == 2


# ----------------------------------------------------------------------------------- maintainer script
def test_recording_script_completes_an_entry_in_one_command(tiny: FakeHub, monkeypatch, capsys) -> None:
    """benchmarks/record_dataset_hashes.py against a set with nothing recorded: its printout, pasted, is an
    entry that verifies, and it says where a recorded entry differs."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "record_dataset_hashes.py"
    spec = importlib.util.spec_from_file_location("record_dataset_hashes", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    recorded = CATALOG["Tiny"].archive
    _install_entry(monkeypatch, HubArchive(REPO, ARCHIVE, None, None, None, 0))
    assert module.main(["Tiny", "--revision", "main"]) == 0
    out = capsys.readouterr().out  # the Python to paste into the catalog: the pixel table, then the entry
    namespace: dict = {"HubArchive": HubArchive}
    start = out.index("\nHubArchive(") + 1
    exec(out[:start], namespace)
    entry = eval(out[start:], namespace)
    assert entry == recorded  # the commit main points to, the archive's sha256 and size, every image's pixels
    _install_entry(monkeypatch, entry)
    assert (fetch.fetch_dataset("Tiny") / "HR" / "im1.png").is_file()
    pixels = dict(recorded.pixels, im2="0" * 64)
    _install_entry(monkeypatch, HubArchive(REPO, ARCHIVE, COMMIT, recorded.sha256, pixels, 0))
    assert module.main(["Tiny"]) == 1
    assert "DIFFERS from the catalog: pixels of im2 differ" in capsys.readouterr().out


def test_an_interrupted_download_leaves_nothing(tiny: FakeHub, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda s: None)  # huggingface_hub resumes 5 times, 1 s apart
    tiny.drop_after = 500
    with pytest.raises(SSTError) as info:
        fetch.fetch_dataset("Tiny")
    _one_sentence(str(info.value))
    assert "could not be downloaded" in str(info.value) and "Tiny/HR" in str(info.value)
    assert _hub_cache_files(tmp_path) == [] and fetch.cached("Tiny") is None
    assert not (tmp_path / "cache" / "sst" / "datasets").exists()
    tiny.drop_after = None  # the next try succeeds
    assert fetch.fetch_dataset("Tiny") == tmp_path / "cache" / "sst" / "datasets" / "Tiny"

"""`sst upscale` on videos: frames, rate, time base, colour, aspect, audio and subtitles kept; resume after
kill -9 or Ctrl-C gives the same video; bad videos fail alone; torchrun shares segments. Every clip is made
here with PyAV (tests that need it skip without it: pip install 'sst-cli[video]')."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from sst_cli.cli import main
from sst_cli.io import files
from sst_cli.io.images import save_array
from sst_cli.upscale import manifest
from sst_cli.upscale.array import upscale_array
from sst_cli.upscale.batch import run_batch
from sst_cli.upscale.jobs import Settings, VideoSettings, plan_jobs
from sst_cli.upscale.upscaler import load_upscaler
from sst_cli.upscale.video import WorkFolder

REPO = Path(__file__).resolve().parents[1]
HAVE_AV = importlib.util.find_spec("av") is not None
needs_av = pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed (pip install 'sst-cli[video]')")
BT709 = (1, 1, 1, 1)  # primaries, transfer, matrix, range (limited): FFmpeg's codes
BT601_FULL = (6, 6, 6, 2)


def frame_image(i: int, w: int, h: int, bits: int = 8) -> np.ndarray:
    """A moving pattern (each frame differs from its neighbours) with flat saturated patches for colour checks."""
    y, x = np.mgrid[0:h, 0:w]
    img = 128 + 100 * np.sin(np.stack([x / 6 + i * 0.9, y / 5 - i * 0.7, (x + y) / 9 + i * 1.3], -1))
    img[: h // 3, : w // 3] = (200, 30, 40)  # red
    img[: h // 3, -w // 3 :] = (30, 180, 60)  # green
    img[-h // 3 :, : w // 3] = (40, 50, 210)  # blue
    return np.round(img * 257).astype(np.uint16) if bits > 8 else img.astype(np.uint8)


def make_clip(path: Path, frames: int = 50, w: int = 64, h: int = 48, rate: int = 25, audio: bool = True,
              codec: str = "libx264", pix_fmt: str = "yuv420p", colour: tuple[int, int, int, int] = BT709,
              subtitles: bool = False, rotation: int = 0, sar: Fraction | None = None) -> Path:
    """A clip of ``frames`` frames at ``rate`` fps with a 440 Hz mono AAC track as long as the video."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    bits = 10 if "10" in pix_fmt else 8
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=rate)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        cc = v.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = colour
        if sar:
            cc.sample_aspect_ratio = sar
        if rotation:
            v.set_display_rotation(rotation)
        a = c.add_stream("aac", rate=16000, layout="mono") if audio else None
        if a is not None:
            a.metadata["language"] = "fra"
        s = c.add_mux_stream("subrip") if subtitles else None
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(frame_image(i, w, h, bits), format="rgb48le" if bits > 8 else "rgb24")
            f.colorspace = colour[2]
            f = f.reformat(format=pix_fmt, dst_color_range=colour[3])
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode())
        if a is not None:
            t = np.arange(16000 * frames // rate) / 16000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for k in range(0, len(wave), 1024):
                af = av.AudioFrame.from_ndarray(wave[None, k : k + 1024], format="flt", layout="mono")
                af.sample_rate, af.pts = 16000, k
                c.mux(a.encode(af))
            c.mux(a.encode())
        if s is not None:
            p = av.Packet(b"Hello")
            p.stream, p.pts, p.dts, p.duration, p.time_base = s, 0, 0, 500, Fraction(1, 1000)
            c.mux(p)
    return path


def planes(frame: object) -> list[np.ndarray]:
    """A decoded frame's Y, U and V planes as they are stored (no colour conversion at all)."""
    out = []
    for p in frame.planes:  # type: ignore[attr-defined]
        dtype = np.uint16 if p.line_size >= 2 * p.width and "p1" in frame.format.name else np.uint8  # type: ignore[attr-defined]
        a = np.frombuffer(p, dtype).reshape(p.height, -1)[:, : p.width]
        out.append(a.astype(np.float64))
    return out


def patch_yuv(yuv: list[np.ndarray], y0: int, x0: int, zoom: int = 1) -> list[float]:
    """Mean Y, U and V of the 8x8 (times ``zoom``) patch at (y0, x0); U and V are stored at half size."""
    side = 8 * zoom
    return [p[y0 // s : (y0 + side) // s, x0 // s : (x0 + side) // s].mean()
            for p, s in zip(yuv, (1, 2, 2), strict=True)]


def read_video(path: Path) -> dict:
    """What a player sees: frames (RGB with the stream's own matrix, chroma upsampled bilinearly at full
    precision), the stored planes, rate, time base, tags, other streams."""
    import av
    from av.video.reformatter import Interpolation as I

    flags = I.BILINEAR | I.ACCURATE_RND | I.FULL_CHR_H_INT | I.FULL_CHR_H_INP
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = list(c.decode(v))
        audio = c.streams.audio
        info = {"frames": [f.to_ndarray(format="rgb24", interpolation=flags) for f in frames],
                "planes": [planes(f) for f in frames], "pts": [f.pts for f in frames],
                "size": (v.width, v.height), "rate": v.average_rate, "time_base": v.time_base,
                "colour": (v.codec_context.color_primaries, v.codec_context.color_trc, v.codec_context.colorspace,
                           v.codec_context.color_range),
                "pix_fmt": v.codec_context.pix_fmt, "sar": v.sample_aspect_ratio, "rotation": frames[0].rotation,
                "codec": v.codec.canonical_name, "streams": [s.type for s in c.streams],
                "audio_seconds": _seconds(path, "audio") if audio else None,
                "audio_language": audio[0].metadata.get("language") if audio else None}
    return info


def _seconds(path: Path, kind: str) -> float:
    """The first ``kind`` stream's length from its packets (Matroska declares none)."""
    import av

    with av.open(str(path)) as c:
        stream = next(s for s in c.streams if s.type == kind)
        return float(max((p.pts + p.duration) * p.time_base for p in c.demux(stream) if p.size))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse)) if mse else float("inf")


def sst(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["upscale", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def leftovers(folder: Path) -> list[str]:
    """Work folders and temporaries: nothing of the kind may stay once a video is done."""
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".sst-work") or files.is_temp(p))


# ------------------------------------------------------------------------------------------ acceptance
@needs_av
def test_video_in_video_out_keeps_frames_rate_colour_and_audio(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "clip.mp4")  # 2 s, 64x48, 25 fps, with audio
    out = tmp_path / "out"
    code, text, err = sst(capsys, str(clip), str(out), "-m", "bicubic", "-s", "2", "--segment-frames", "20",
                          "--json", str(tmp_path / "r.json"))
    assert code == 0, text + err
    src, got = read_video(clip), read_video(out / "clip.mp4")
    assert got["size"] == (128, 96) and len(got["frames"]) == len(src["frames"]) == 50
    assert got["rate"] == 25 and got["time_base"] == src["time_base"] and got["pts"] == src["pts"]
    assert got["colour"] == src["colour"] == BT709 and got["pix_fmt"] == "yuv420p"
    assert got["streams"] == ["video", "audio"] and got["audio_language"] == "fra"
    assert got["audio_seconds"] == pytest.approx(src["audio_seconds"]) and src["audio_seconds"] == pytest.approx(2, abs=0.1)
    # each frame is the upscaled frame at its own place (neighbours differ by far more than x264 at crf 18)
    bicubic = load_upscaler("bicubic", 2, device="cpu")
    for i in (0, 17, 49):
        want = upscale_array(src["frames"][i], bicubic)
        assert psnr(got["frames"][i], want) > 33
        assert psnr(got["frames"][i], upscale_array(src["frames"][i - 1], bicubic)) < 20
    row = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert row["status"] == "done" and row["output_size"] == [128, 96]
    assert row["video"] | {"time_base": None} == {
        "frames": 50, "fps": 25.0, "time_base": None, "codec": "libx264", "crf": 18, "pix_fmt": "yuv420p",
        "container": "mp4", "colour": row["video"]["colour"], "audio_streams": 1, "subtitle_streams": 0,
        "segments": 3, "segments_resumed": 0}
    assert "libx264 crf 18, yuv420p" in row["notes"] and "audio copied (1 stream)" in row["notes"]
    assert leftovers(out) == [] and manifest.record_path(out / "clip.mp4").exists()
    # the skip rule: the same settings keep it, other ones redo it
    code, text, _ = sst(capsys, str(clip), str(out), "-m", "bicubic", "-s", "2", "--segment-frames", "20")
    assert code == 0 and "1 skipped" in text
    # ... other ones keep it (nothing a user made is replaced without --overwrite), and --overwrite redoes it
    before = (out / "clip.mp4").read_bytes()
    code, text, _ = sst(capsys, str(clip), str(out), "-m", "bicubic", "-s", "2", "--segment-frames", "20",
                        "--crf", "30")
    assert code == 1 and "not replaced: clip.mp4" in " ".join(text.split()) and (out / "clip.mp4").read_bytes() == before
    code, text, _ = sst(capsys, str(clip), str(out), "-m", "bicubic", "-s", "2", "--segment-frames", "20",
                        "--crf", "30", "--overwrite")
    assert code == 0 and (out / "clip.mp4").read_bytes() != before


@needs_av
def test_colour_matrix_range_depth_aspect_and_rotation_survive(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Flat patches keep their colour (a BT.601/709 or range mix-up shifts them by 10+ levels)."""
    cases = {"709.mp4": {"colour": BT709}, "601full.mkv": {"colour": BT601_FULL, "sar": Fraction(4, 3),
                                                            "rotation": 90},
             "deep.mp4": {"colour": BT709, "pix_fmt": "yuv420p10le"}}
    for name, kw in cases.items():
        make_clip(tmp_path / "in" / name, frames=6, audio=False, **kw)
    code, text, err = sst(capsys, str(tmp_path / "in"), str(tmp_path / "out"), "-m", "bicubic", "-s", "2")
    assert code == 0, text + err
    for name, kw in cases.items():
        src, got = read_video(tmp_path / "in" / name), read_video(tmp_path / "out" / name)
        assert got["colour"] == src["colour"] == kw["colour"]
        assert got["pix_fmt"] == src["pix_fmt"] == {"601full.mkv": "yuvj420p"}.get(name, kw.get("pix_fmt", "yuv420p"))
        assert got["sar"] == src["sar"]
        assert got["rotation"] == kw.get("rotation", 0)
        top = 4 if "10" in kw.get("pix_fmt", "") else 1  # 10-bit levels are 4 times finer
        shift = []
        for k in range(len(got["frames"])):
            for y0, x0 in ((2, 2), (2, 46), (34, 2)):  # inside the red, green and blue patches (input pixels)
                # the stored Y, U and V themselves: equal only when both ways used the declared matrix and range
                yuv_in, yuv_out = patch_yuv(src["planes"][k], y0, x0), patch_yuv(got["planes"][k], 2 * y0, 2 * x0, 2)
                assert np.abs(np.subtract(yuv_out, yuv_in)).max() < 1.5 * top, (name, k, yuv_in, yuv_out)
                rgb_in = src["frames"][k][y0 : y0 + 8, x0 : x0 + 8].reshape(-1, 3).mean(0)
                rgb_out = got["frames"][k][y0 * 2 : (y0 + 8) * 2, x0 * 2 : (x0 + 8) * 2].reshape(-1, 3).mean(0)
                assert np.abs(rgb_out - rgb_in).max() < 2, (name, k, rgb_in, rgb_out)
                shift.append(rgb_out - rgb_in)
        assert abs(np.mean(shift)) < 0.3, (name, np.mean(shift))  # no darkening or brightening overall


@needs_av
def test_one_video_to_a_named_file_and_subtitles_copied(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "clip.mkv", frames=8, subtitles=True)
    code, text, err = sst(capsys, str(clip), str(tmp_path / "big.mkv"), "-m", "bicubic", "-s", "2",
                          "--audio", "drop")
    assert code == 0, text + err
    got = read_video(tmp_path / "big.mkv")
    assert got["streams"] == ["video", "subtitle"] and len(got["frames"]) == 8 and got["size"] == (128, 96)
    assert "audio dropped" in text
    # names that cannot hold the result are usage errors, before anything runs
    assert sst(capsys, str(clip), str(tmp_path / "big.png"), "-m", "bicubic")[0] == 2
    save_array(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    assert sst(capsys, str(tmp_path / "a.png"), str(tmp_path / "a.mp4"), "-m", "bicubic")[0] == 2


def test_video_options_are_checked_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"x")
    for flags in (["--audio", "mute"], ["--segment-frames", "0"], ["--crf", "-1"]):
        assert sst(capsys, str(tmp_path / "clip.mp4"), str(tmp_path / "out"), "-m", "bicubic", *flags)[0] == 2
    assert not (tmp_path / "out").exists()


def test_videos_in_folders_are_found_and_named(tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("a.mp4", "b.avi", "sub/c.webm", "d.png", ".hidden.mp4"):
        (tmp_path / "in" / name).write_bytes(b"x")
    jobs = plan_jobs([str(tmp_path / "in")], tmp_path / "out", Settings(recursive=True, suffix="_x2"))
    assert sorted(str(j.dst.relative_to(tmp_path / "out")) for j in jobs) == [
        "a_x2.mp4", "b_x2.mkv", "d_x2.png", "sub/c_x2.webm"]  # avi is written as Matroska


# ----------------------------------------------------------------------------------------- bad inputs
@needs_av
def test_corrupt_and_unsupported_videos_fail_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "in"
    good = make_clip(inp / "good.mp4", frames=6)
    (inp / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (inp / "cut.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 3])  # moov atom lost
    make_clip(inp / "silent.mkv", frames=4).write_bytes(b"")  # empty
    import av

    with av.open(str(inp / "song.m4v"), "w", format="mp4") as c:  # audio only
        a = c.add_stream("aac", rate=16000, layout="mono")
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        f.sample_rate, f.pts = 16000, 0
        c.mux(a.encode(f))
        c.mux(a.encode())
    save_array(inp / "photo.png", np.zeros((8, 8, 3), np.uint8))
    code, text, err = sst(capsys, str(inp), str(tmp_path / "out"), "-m", "bicubic", "-s", "2", "--json", "-")
    report = json.loads(text)
    assert code == 1 and "Traceback" not in err
    status = {Path(r["input"]).name: (r["status"], r["reason"]) for r in report["results"]}
    assert status["good.mp4"][0] == status["photo.png"][0] == "done"
    for name in ("noise.mp4", "cut.mp4", "silent.mkv", "song.m4v"):
        state, why = status[name]
        assert state == "failed" and why.startswith(name) and why.endswith(".") and "\n" not in why, why
    assert status["song.m4v"][1] == "song.m4v holds no video stream."
    assert leftovers(tmp_path / "out") == []


def test_without_pyav_a_video_fails_in_one_sentence_and_the_batch_goes_on(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "clip.mp4").write_bytes(b"not needed: PyAV is missing")
    save_array(tmp_path / "in" / "photo.png", np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    settings = Settings()
    jobs = plan_jobs([str(tmp_path / "in")], tmp_path / "out", settings)
    summary = run_batch(jobs, load_upscaler("bicubic", 2, device="cpu"), settings)
    status = {r.job.src.name: (r.status, r.reason) for r in summary.results}
    assert status["photo.png"] == ("done", "")
    assert status["clip.mp4"] == ("failed", "clip.mp4 is a video, and videos need PyAV, which is not installed: "
                                            "pip install 'sst-cli[video]'.")


# ------------------------------------------------------------------------------------------- resuming
CHILD = """
import os, signal, sys
import sst_cli.upscale.video as v
from sst_cli.cli import main

real, seen = v.upscale_array, []
def counted(*a, **k):  # stands for a user's kill: lands once this frame is upscaled
    seen.append(1)
    if len(seen) == int(os.environ["SST_TEST_KILL_AT"]):
        os.kill(os.getpid(), getattr(signal, os.environ["SST_TEST_SIGNAL"]))
    return real(*a, **k)
v.upscale_array = counted
sys.exit(main(sys.argv[1:]))
"""


@needs_av
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
def test_an_interrupted_video_resumes_and_gives_the_same_video(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               sig: str) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    args = ["upscale", str(clip), "-m", "bicubic", "-s", "2", "--segment-frames", "10", "--device", "cpu"]
    assert main([*args, str(tmp_path / "whole")]) == 0  # uninterrupted
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path]), "OMP_NUM_THREADS": "1",
           "SST_TEST_KILL_AT": "25", "SST_TEST_SIGNAL": sig}
    proc = subprocess.run([sys.executable, "-c", CHILD, *args, str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    work = WorkFolder.beside(out / "clip.mp4").path
    segments = sorted(p.name for p in work.glob("seg-*") if not files.is_temp(p))
    assert segments == ["seg-000000.mp4", "seg-000001.mp4"]  # the third was cut short
    assert not (out / "clip.mp4").exists() and not any(files.is_temp(p) for p in out.iterdir())
    if sig == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130 and "Traceback" not in proc.stderr and "run the same command again" in proc.stderr
        assert [p.name for p in work.iterdir() if files.is_temp(p)] == []  # Ctrl-C removes the partial segment
    capsys.readouterr()
    assert main([*args, str(out), "--json", str(tmp_path / "r.json")]) == 0
    row = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert row["video"]["segments_resumed"] == 2 and "resumed: 2 of 5 segments were done" in row["notes"]
    whole, resumed = read_video(tmp_path / "whole" / "clip.mp4"), read_video(out / "clip.mp4")
    assert len(resumed["frames"]) == 50 and resumed["pts"] == whole["pts"]
    assert all(np.array_equal(a, b) for a, b in zip(whole["frames"], resumed["frames"], strict=True))
    assert resumed["streams"] == ["video", "audio"]
    assert leftovers(out) == []  # the work folder and the killed run's temporary are gone


def test_a_changed_recipe_starts_the_segments_over(tmp_path: Path) -> None:
    work = WorkFolder(tmp_path / ".clip.mp4.sst-work")
    assert work.prepare({"crf": 18}, tile=96) == 0 and work.tile() == 96
    work.segment(0, "mp4").write_bytes(b"a whole segment")
    (work.path / f".seg-000001.mp4{files.TEMP_MARK}999999999-abcd").write_bytes(b"a dead run's")
    # "auto" tiles may come out otherwise with other free memory: a resumed run keeps the first run's
    assert work.prepare({"crf": 18}, tile=64) == 1 and work.tile() == 96
    assert len(list(work.path.iterdir())) == 2  # key + segment: the dead run's temporary is gone
    assert work.prepare({"crf": 20}, tile=64) == 0 and not work.segment(0, "mp4").exists() and work.tile() == 64


# ------------------------------------------------------------------------------------------- encoders
def _encoders() -> list[str]:
    if not HAVE_AV:
        return []
    import av

    out = []
    for name in ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            out.append(name)
        except Exception:  # noqa: BLE001 - not in this build
            pass
    return out


@needs_av
@pytest.mark.parametrize("codec", _encoders() or ["none"])
def test_each_encoder_writes_every_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str], codec: str) -> None:
    clip = make_clip(tmp_path / "clip.mkv", frames=12)
    name = "big.webm" if codec in ("libvpx-vp9", "libsvtav1") else "big.mkv"
    code, text, err = sst(capsys, str(clip), str(tmp_path / name), "-m", "bicubic", "-s", "2", "--codec", codec,
                          "--segment-frames", "5", "--json", "-")
    assert code == 0, text + err
    notes = json.loads(text)["results"][0]["notes"]
    if name.endswith(".webm"):  # WebM holds no AAC: the audio is left out, and the summary says so
        assert "audio stream 1 (aac) left out: webm cannot hold it" in notes
    else:
        assert "audio copied (1 stream)" in notes
    got = read_video(tmp_path / name)
    assert len(got["frames"]) == 12 and got["size"] == (128, 96) and got["pts"] == read_video(clip)["pts"]
    bicubic = load_upscaler("bicubic", 2, device="cpu")
    assert psnr(got["frames"][7], upscale_array(read_video(clip)["frames"][7], bicubic)) > 30


def test_garbage_decode_times_are_replaced() -> None:
    """libx265 sometimes returns uninitialised dts for one- or two-frame segments; a muxer refuses them."""
    from sst_cli.io.video import DecodeTimes

    t = DecodeTimes(step=40, first=400)
    assert [t.valid(400, -9570295239278226), t.valid(440, -9570295239278186)] == [400, 440]
    t = DecodeTimes(step=40, first=400)
    assert [t.valid(p, d) for p, d in ((400, 320), (480, 360), (440, 400), (520, 440))] == [320, 360, 400, 440]
    t = DecodeTimes(step=40, first=400)
    assert [t.valid(400, 7451037802321897720), t.valid(440, None)] == [400, 440]


@needs_av
def test_encoder_choices_are_checked_in_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=4, audio=False)
    for flags, says in ((["--codec", "nosuch"], "no video encoder nosuch"),
                        (["--codec", "libx264", "--pix-fmt", "rgb8"], "cannot encode --pix-fmt rgb8"),
                        (["--codec", "mpeg4", "--crf", "20"], "--crf applies to"),
                        (["--pix-fmt", "yuv420p", "--outscale", "1.3"], "needs an even width and height")):
        code, text, err = sst(capsys, str(clip), str(tmp_path / "o"), "-m", "bicubic", "-s", "2", "--json", "-",
                              *flags)
        reason = json.loads(text)["results"][0]["reason"]
        assert code == 1 and says in reason and reason.endswith("."), reason
    code, text, _ = sst(capsys, str(clip), str(tmp_path / "odd"), "-m", "bicubic", "-s", "2", "--outscale", "1.3",
                        "--json", "-")
    assert code == 0 and "yuv444p because 83x62 is odd" in json.loads(text)["results"][0]["notes"]
    assert read_video(tmp_path / "odd" / "clip.mp4")["size"] == (83, 62)


# ------------------------------------------------------------------------------------------- torchrun
@needs_av
def test_torchrun_shares_the_segments_and_gives_the_same_video(tmp_path: Path) -> None:
    import socket

    clip = make_clip(tmp_path / "in" / "clip.mp4", frames=30)
    save_array(tmp_path / "in" / "photo.png", np.zeros((8, 8, 3), np.uint8))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path]), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    common = ["upscale", str(tmp_path / "in"), "-m", "bicubic", "-s", "2", "--segment-frames", "10", "--threads", "1"]
    assert main([*common, str(tmp_path / "one"), "--device", "cpu"]) == 0
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                          "127.0.0.1", "--master-port", str(port), "-m", "sst_cli", *common, str(tmp_path / "two"),
                          "--json", str(tmp_path / "two.json")], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "two.json").read_text())
    assert report["processes"] == 2 and (report["done"], report["failed"]) == (2, 0)
    assert [Path(r["input"]).name for r in report["results"]] == ["clip.mp4", "photo.png"]  # each once
    one, two = read_video(tmp_path / "one" / "clip.mp4"), read_video(tmp_path / "two" / "clip.mp4")
    assert two["pts"] == one["pts"] and two["streams"] == ["video", "audio"]
    assert all(np.array_equal(a, b) for a, b in zip(one["frames"], two["frames"], strict=True))
    assert leftovers(tmp_path / "two") == [] and clip.exists()


@needs_av
def test_each_rank_encodes_only_its_segments_and_any_process_joins_them(tmp_path: Path) -> None:
    from sst_cli.distributed import Dist
    from sst_cli.upscale.batch import recipe
    from sst_cli.upscale.video import upscale_video

    clip = make_clip(tmp_path / "clip.mp4", frames=25)
    settings = Settings(video=VideoSettings(segment_frames=10))
    job = plan_jobs([str(clip)], tmp_path / "out", settings)[0]
    up = load_upscaler("bicubic", 2, device="cpu")
    work = WorkFolder.beside(job.dst)
    ranks = [Dist(1, 2), Dist(0, 2)]

    def share(rank: Dist) -> list[str]:
        from sst_cli.io import video as av_io
        from sst_cli.upscale.video import _encode_share, _key

        info = av_io.probe(clip)
        enc = av_io.choose_encoding(info, job.dst, 128, 96)
        work.prepare(_key(job, settings, recipe(up, settings, job.dst), enc), tile=0)
        frames, _ = _encode_share(job, up, settings, info, enc, work, (128, 96), rank, None)
        assert frames == 25
        return sorted(p.name for p in work.path.glob("seg-*"))

    assert share(ranks[0]) == ["seg-000001.mp4"]  # rank 1 of 2: the odd segments
    assert share(ranks[1]) == ["seg-000000.mp4", "seg-000001.mp4", "seg-000002.mp4"]
    done = upscale_video(job, up, settings, recipe(up, settings, job.dst), Dist())  # nothing left but the join
    assert done.summary["segments_resumed"] == 3 and len(read_video(job.dst)["frames"]) == 25


@needs_av
def test_frames_dir_holds_every_upscaled_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sst_cli.io.images import read_image

    clip = make_clip(tmp_path / "clip.mp4", frames=7, audio=False)
    code, text, err = sst(capsys, str(clip), str(tmp_path / "out"), "-m", "bicubic", "-s", "2", "--frames-dir",
                          str(tmp_path / "frames"))
    assert code == 0, text + err
    pngs = sorted((tmp_path / "frames" / "clip").iterdir())
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(7)]
    from sst_cli.io import video as av_io

    info = av_io.probe(clip)
    bicubic = load_upscaler("bicubic", 2, device="cpu")
    for d, png in zip(av_io.read_frames(clip, info), pngs, strict=True):
        assert np.array_equal(read_image(png).pixels, upscale_array(d.rgb(8), bicubic))


@needs_av
def test_progress_reports_frames_and_speed(tmp_path: Path) -> None:
    from sst_cli.upscale.batch import NoEvents

    seen: list[tuple[int, int, float]] = []

    class Events(NoEvents):
        def frames(self, done: int, total: int, fps: float) -> None:
            seen.append((done, total, fps))

    clip = make_clip(tmp_path / "clip.mp4", frames=12, audio=False)
    settings = Settings(video=VideoSettings(segment_frames=5))
    summary = run_batch(plan_jobs([str(clip)], tmp_path / "out", settings), load_upscaler("bicubic", 2, device="cpu"),
                        settings, Events())
    assert summary.count("done") == 1
    assert [d for d, _, _ in seen] == list(range(1, 13)) and all(t == 12 and f > 0 for _, t, f in seen)


@needs_av
def test_mpeg4_runs_at_its_fixed_quantiser(tmp_path: Path) -> None:
    """mpeg4 has no --crf: without its quantiser set it falls back to a low bit rate (visibly blocky)."""
    import av

    from sst_cli.io import video as av_io

    clip = make_clip(tmp_path / "clip.mp4", frames=4, audio=False)
    info = av_io.probe(clip)
    enc = av_io.choose_encoding(info, tmp_path / "o.mkv", 128, 96, "mpeg4")
    assert enc.describe() == "mpeg4 qscale 2, yuv420p"
    frames = [(d.pts, upscale_array(d.rgb(8), load_upscaler("bicubic", 2, device="cpu")))
              for d in av_io.read_frames(clip, info)]
    av_io.write_segment(tmp_path / "seg.mp4", frames, info, enc, 128, 96)
    with av.open(str(tmp_path / "seg.mp4")) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    assert min(psnr(g, want) for g, (_, want) in zip(got, frames, strict=True)) > 34


def test_only_io_video_touches_pyav() -> None:
    """PyAV stays an optional extra behind one module: nothing else imports it."""
    import sst_cli

    root = Path(sst_cli.__file__).parent
    users = [str(f.relative_to(root)) for f in root.rglob("*.py")
             if any(s in f.read_text(encoding="utf-8") for s in ("import av\n", "from av ", "from av.", "import av."))]
    assert users == ["io/video.py"]

"""The command line as a whole: start-up without torch, --version, `sst env`, one option vocabulary, exit 2 for
usage errors found while parsing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sst_cli import __version__
from sst_cli.cli import main

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}


@pytest.mark.parametrize("args", [["--help"], ["upscale", "--help"], ["eval", "--help"], ["profile", "--help"],
                                  ["models", "--help"], ["train", "--help"], ["--version"],
                                  ["upscale", "a.png", "out", "--scale", "7"]])
def test_help_version_and_usage_errors_do_not_import_torch(args: list[str]) -> None:
    code = ("import sys, runpy; sys.argv = ['sst', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('sst_cli', run_name='__main__')\n"
            "except SystemExit as e:\n    print('EXIT', e.code, 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env(), timeout=120)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.endswith("False"), (args, proc.stdout[-500:], proc.stderr[-500:])


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sst {__version__}"


def test_env_reports_versions(tmp_path: Path, capsys) -> None:
    out = tmp_path / "env.json"
    assert main(["env", "--json", str(out)]) == 0
    facts = json.loads(out.read_text())
    assert facts["sst"] == __version__ and "torch" in facts["packages"] and "python" in facts
    assert "torch" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "words"), [
    (["upscale", "in.png", "out", "--model", "bicubic", "--scale", "-2"], "--scale"),
    (["upscale", "in.png", "out", "--model", "sst-huge"], "not a model"),
    (["upscale", "in.png", "out", "--dtype", "fp8"], "--dtype"),
    (["upscale", "in.png", "out", "--backend", "fa9"], "--backend"),
    (["upscale", "in.png", "out", "--tile", "big"], "--tile"),
    (["upscale", "in.png", "out", "--tile-overlap", "-1"], "--tile-overlap"),
    (["upscale", "in.png", "out", "--device", "gpu"], "not a device"),
    (["upscale", "in.png", "out", "--alpha", "keep"], "--alpha"),
    (["eval", "--dataset", "Set5", "--random-weights", "--model", "sst", "--scale", "5"], "scale must be one of"),
    (["profile", "--size", "720p"], "WIDTHxHEIGHT"),
    (["profile", "--bias", "alibi"], "rib, rpb, none"),
    (["profile", "--threads", "0"], "--threads"),
])
def test_usage_errors_exit_2_with_a_reason(args: list[str], words: str, capsys) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err


def test_help_lists_choices(capsys) -> None:
    assert main(["upscale", "--help"]) == 0
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    for choice in ("auto|fp32|bf16|fp16", "tf32:", "sst-l+", "bicubic", "auto|0|N", "FILE"):
        assert choice in text, choice
    assert "--tile-overlap" in text and "--json" in text


@pytest.mark.parametrize("cmd", [[], ["upscale"], ["eval"], ["profile"], ["profile", "compare"], ["train"],
                                 ["env"], ["models"], ["models", "download"]])
def test_help_shows_no_type_beside_flags(cmd: list[str], capsys) -> None:
    assert main([*cmd, "--help"]) == 0
    text = capsys.readouterr().out
    assert "--help" in text and "<bool>" not in text and "BOOLEAN" not in text


def test_same_vocabulary_in_every_command(capsys) -> None:
    """-m/--model, -s/--scale, --device, --dtype, --backend, --json FILE: one spelling everywhere."""
    helps = {}
    for cmd in ("upscale", "eval", "profile"):
        assert main([cmd, "--help"]) == 0
        helps[cmd] = capsys.readouterr().out
    for cmd, text in helps.items():
        for opt in ("--model", "-m", "--scale", "-s", "--device", "--dtype", "--backend", "--json"):
            assert opt in text, (cmd, opt)
    assert "--overlap " not in helps["eval"] and "--tile-overlap" in helps["eval"]


@pytest.mark.parametrize(("args", "code", "words"), [
    (["upscale", "nosuch*.png", "o/"], 2, "no file matches nosuch*.png"),
    (["upscale", "{data}/Set5/HR", "out.png"], 2, "names one file"),
    (["upscale", "a.png", "o/", "--tile", "big"], 2, "--tile"),
    (["eval", "--dataset", "Nosuch", "--data-root", "{data}"], 1, "dataset Nosuch not found"),
    (["eval", "--dataset", "Set5", "--metrics", "psnr_z"], 2, "metrics are a comma list of psnr, ssim, lpips"),
    (["eval", "--dataset", "photos/", "--lq-only", "--metrics", "niqe,ssim"], 2,
     "ssim_y compares with ground truth, which --lq-only datasets do not have"),
    (["profile", "--backend", "fa9"], 2, "not an attention backend"),
    (["profile", "compare", "nosuch.json"], 1, "nosuch.json does not exist"),
    (["models", "download", "sst-huge"], 2, "sst-huge"),
    (["train", "--data", "d/", "--set", "iter=10"], 2, "unknown config key(s): iter (did you mean iters?)"),
    (["train", "--data", "d/", "--set", "batch=big"], 2, "'batch' must be an integer"),
    (["train", "--config", "nosuch.yaml"], 2, "config file nosuch.yaml does not exist"),
    (["train", "--data", "d/", "--extend"], 2, "use it with --resume"),
    (["train", "--data", "d/", "--resume", "--overwrite"], 2, "choose one"),
])
def test_errors_found_from_the_arguments_answer_before_torch(args: list[str], code: int, words: str,
                                                             tmp_path: Path) -> None:
    """`python -X importtime -m sst_cli ...` lists every module imported: torch must not be one of them."""
    args = [a.replace("{data}", str(REPO / "tests" / "data")) for a in args]
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "sst_cli", *args], capture_output=True,
                          text=True, env=_env(), timeout=120, cwd=tmp_path)
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    message = " ".join(line for line in proc.stderr.splitlines() if not line.startswith("import time:"))
    assert proc.returncode == code, message
    assert words in " ".join(message.split()), message
    assert "torch" not in imported and "Traceback" not in message


def _command_paths() -> list[list[str]]:
    """Every command and group of `sst`, as the words that name it."""
    import click
    import typer.main

    from sst_cli.cli import app

    paths: list[list[str]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_every_help_page_reads_well_at_80_columns(monkeypatch, capsys) -> None:
    from sst_cli.model.registry import BACKENDS

    monkeypatch.setenv("COLUMNS", "80")
    paths = _command_paths()
    assert {"upscale", "eval", "train", "env"} <= {p[0] for p in paths if p} and ["profile", "compare"] in paths
    for path in paths:
        assert main([*path, "--help"]) == 0
        text = capsys.readouterr().out
        name = " ".join(["sst", *path])
        assert max(map(len, text.splitlines())) <= 80, name
        for leak in ("…", "<list[", "<Any>", "<str>", "<int>", "<float>", "<Path>", "<list[Path]", "Value error"):
            assert leak not in text, (name, leak)
        usage = " ".join(text.split("\n\n")[0].split())
        assert "{" not in usage and "}..." not in usage, (name, usage)  # e.g. sst upscale [OPTIONS] INPUT... OUTPUT
        if re.search(r"--backend\b(?!s)", text):  # choices wrap between names, never inside one
            words = set(re.split(r"[\s,;:.│()`]+", text))
            assert set(BACKENDS) <= words, (name, set(BACKENDS) - words)
    assert main(["upscale", "--help"]) == 0
    assert "Usage: sst upscale [OPTIONS] INPUT... OUTPUT" in capsys.readouterr().out


def test_set_means_key_value_everywhere(capsys) -> None:
    """`sst train --set KEY=VALUE`; the training set of official weights is `--trained-on` (old --set hidden)."""
    assert main(["models", "download", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--trained-on" in text and "--set" not in text
    assert main(["train", "--help"]) == 0
    assert "KEY=VALUE" in capsys.readouterr().out

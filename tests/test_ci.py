"""CI runs the spandrel suite, and that suite cannot pass by skipping: `.ci/run` calls `make spandrel-test`, whose
commands never touch .venv; with SST_REQUIRE_SPANDREL=1 a missing spandrel is an error; and
tests/require_all_ran.py fails a pytest report with a skip or no test in it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import require_all_ran

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_the_spandrel_suite_after_the_others() -> None:
    steps = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines() if line.startswith("make ")]
    assert steps == ["make test", "make wheel-test", "make spandrel-test iqa-test"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target,switch,suite", [("spandrel-test", "SST_REQUIRE_SPANDREL", "spandrel"),
                                                  ("iqa-test", "SST_REQUIRE_PYIQA", "iqa")])
def test_make_extras_tests_need_no_project_venv(target: str, switch: str, suite: str) -> None:
    """What `make spandrel-test` / `make iqa-test` would run (make -n): the extras venv, the no-skip switch and
    the report check."""
    # As a top-level make would print it, also when the suite itself runs under make (`make test` in CI): no
    # "make[1]: Entering directory" lines, no inherited flags.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=REPO, capture_output=True, text=True,
                          check=True, env=env)
    lines = done.stdout.splitlines()
    assert not [line for line in lines if ".venv/" in line or ".venv " in line], lines
    pytest_line = next(line for line in lines if "-m pytest" in line)
    assert pytest_line.startswith(f"{switch}=1 .venv-extras/bin/python ") and f"tests/test_{suite}.py" \
        in pytest_line and f"--junitxml=build/{suite}-tests.xml" in pytest_line
    assert lines[-1] == f".venv-extras/bin/python tests/require_all_ran.py build/{suite}-tests.xml"


def _spandrel_suite(require: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SST_REQUIRE_SPANDREL"}
    if require:
        env["SST_REQUIRE_SPANDREL"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_spandrel.py"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(importlib.util.find_spec("spandrel") is not None, reason="spandrel is installed here")
def test_without_spandrel_the_suite_skips_here_but_fails_when_required() -> None:
    relaxed = _spandrel_suite(require=False)  # the module skips: pytest counts no test (exit 5) and one skip
    assert relaxed.returncode == pytest.ExitCode.NO_TESTS_COLLECTED and "1 skipped" in relaxed.stdout, relaxed.stdout
    strict = _spandrel_suite(require=True)  # a collection error, which names the missing module
    assert strict.returncode == pytest.ExitCode.INTERRUPTED, strict.stdout
    assert "No module named 'spandrel'" in strict.stdout and "skipped" not in strict.stdout, strict.stdout


def _report(tmp: Path, tests: int, skipped: int) -> Path:
    path = tmp / f"r{tests}_{skipped}.xml"
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="{tests}" skipped="{skipped}" '
                    'failures="0" errors="0"/></testsuites>')
    return path


def test_require_all_ran_fails_on_a_skip_or_an_empty_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert require_all_ran.main([str(_report(tmp_path, 15, 0))]) == 0
    assert "15 tests ran, none skipped" in capsys.readouterr().out
    assert require_all_ran.main([str(_report(tmp_path, 15, 15))]) == 1
    assert "15 tests, 15 skipped" in capsys.readouterr().err
    assert require_all_ran.main([str(_report(tmp_path, 15, 1))]) == 1
    assert require_all_ran.main([str(_report(tmp_path, 0, 0))]) == 1
    assert require_all_ran.main([]) == 2


def test_require_all_ran_reads_pytests_own_report(tmp_path: Path) -> None:
    """Counted from a report pytest itself wrote: 2 passed and 1 skipped are 3 tests, 1 skipped."""
    (tmp_path / "test_tiny.py").write_text("import pytest\n\ndef test_a():\n    pass\n\ndef test_b():\n    pass\n\n"
                                           "@pytest.mark.skip(reason='off')\ndef test_c():\n    pass\n")
    report = tmp_path / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                    "test_tiny.py"], cwd=tmp_path, capture_output=True, check=True, timeout=120)
    assert require_all_ran.counts(report) == (3, 1)
    assert require_all_ran.main([str(report)]) == 1

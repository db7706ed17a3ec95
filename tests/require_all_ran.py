"""Fail unless a pytest run (its --junitxml report) ran at least one test and skipped none.

`make spandrel-test` runs it after tests/test_spandrel.py: that suite exists to run in its own venv, so a skip
there means the venv is broken (spandrel or torchvision did not import), and a suite of skips would pass
silently. Usage: ``python tests/require_all_ran.py REPORT.xml``; exit 0, or 1 with one sentence.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(report: Path) -> tuple[int, int]:
    """(tests, skipped) over every <testsuite> of a junit XML report (pytest writes one under <testsuites>)."""
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    return (sum(int(s.get("tests", 0)) for s in suites), sum(int(s.get("skipped", 0)) for s in suites))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/require_all_ran.py REPORT.xml", file=sys.stderr)
        return 2
    tests, skipped = counts(Path(argv[0]))
    if tests == 0 or skipped:
        print(f"{argv[0]}: {tests} tests, {skipped} skipped; every test must run here (pytest -rs says why "
              "they skipped).", file=sys.stderr)
        return 1
    print(f"{argv[0]}: {tests} tests ran, none skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

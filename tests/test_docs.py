"""benchmarks/RESULTS.md is a record that code can cite: every `RESULTS.md#anchor` or `history.md#anchor` cited in
the repository exists, every benchmark section follows the template (Command, Machine, Table, Verdict) with a
stable anchor, the sections run newest first, and every JSON it names is in benchmarks/results/."""

from __future__ import annotations

import re
from pathlib import Path

SELF = Path(__file__).resolve()  # its examples are not citations
REPO = SELF.parents[1]
BENCH = REPO / "benchmarks"
TEMPLATE = ["### Command", "### Machine", "### Table", "### Verdict"]
# Where citations may live: the package, benchmarks, tests, docs and the files at the top of the repository.
CITING = ["sst_cli", "benchmarks", "tests", "integrations", "docs", "checkpoints", "configs", ".ci",
          "Makefile", "README.md", "CHANGELOG.md", "pyproject.toml"]
CITATION = re.compile(r"\b(RESULTS|history)\.md#([A-Za-z0-9._-]+)")
ANCHOR = re.compile(r'<a id="([^"]+)"></a>')
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def anchors(text: str) -> set[str]:
    return set(ANCHOR.findall(text))


def citing_files(root: Path) -> list[Path]:
    """Text files under ``root`` that may cite the record (tests/data, caches and venvs left out)."""
    found: list[Path] = []
    for name in CITING:
        path = root / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        found += [p for p in files if "__pycache__" not in p.parts and (root / "tests" / "data") not in p.parents
                  and p.stat().st_size < 1 << 20 and p != SELF]
    return found


def broken_citations(root: Path) -> list[str]:
    """Each cited `RESULTS.md#x` / `history.md#x`, and each `(#x)` link inside those two files, whose anchor is
    missing, as "file: citation"."""
    targets = {"RESULTS": root / "benchmarks" / "RESULTS.md", "history": root / "benchmarks" / "history.md"}
    ids = {name: anchors(path.read_text(encoding="utf-8")) if path.exists() else set() for name, path in targets.items()}
    broken = []
    for path in citing_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(root)
        broken += [f"{rel}: {name}.md#{anchor}" for name, anchor in CITATION.findall(text) if anchor not in ids[name]]
        for name, target in targets.items():
            if path == target:
                broken += [f"{rel}: #{a}" for a in re.findall(r"\]\(#([^)]+)\)", text) if a not in ids[name]]
    return broken


def sections(text: str) -> list[tuple[str, str, str]]:
    """(anchor, heading, body) of each benchmark section: an anchor line right before a `## ` heading."""
    found = re.finditer(r'^<a id="([^"]+)"></a>\n## (.+)\n', text, flags=re.M)
    starts = [(m.group(1), m.group(2), m.start(), m.end()) for m in found]
    ends = [s[2] for s in starts[1:]] + [len(text)]
    return [(anchor, heading, text[end:stop]) for (anchor, heading, _, end), stop in zip(starts, ends, strict=True)]


def results() -> str:
    return (BENCH / "RESULTS.md").read_text(encoding="utf-8")


def test_every_cited_anchor_exists() -> None:
    cited = [m for p in citing_files(REPO) if p.suffix in (".py", ".md", "") for m in
             CITATION.findall(p.read_text(encoding="utf-8", errors="replace"))]
    assert len(cited) >= 7, cited  # the code comments that cite measurements do so by anchor
    assert broken_citations(REPO) == []


def test_a_broken_citation_is_reported(tmp_path: Path) -> None:
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "RESULTS.md").write_text('<a id="kept"></a>\n## Kept\n[gone](#gone) [ok](#kept)\n')
    (tmp_path / "benchmarks" / "history.md").write_text('<a id="old"></a>\n')
    (tmp_path / "sst_cli").mkdir()
    (tmp_path / "sst_cli" / "a.py").write_text("# see benchmarks/RESULTS.md#kept and RESULTS.md#missing\n"
                                               "# and benchmarks/history.md#old, history.md#kept\n")
    assert sorted(broken_citations(tmp_path)) == ["benchmarks/RESULTS.md: #gone", "sst_cli/a.py: RESULTS.md#missing",
                                                  "sst_cli/a.py: history.md#kept"]


def test_each_section_follows_the_template() -> None:
    text = results()
    found = sections(text)
    assert [a for a, _, _ in found] == ["degradations", "default-path-1080p", "png-level", "vs-official", "image-io",
                                        "cpu-inference", "profile-cpu", "tiled-memory"]
    history = anchors((BENCH / "history.md").read_text(encoding="utf-8"))
    for anchor, heading, body in found:
        headings = re.findall(r"^### .*$", body, flags=re.M)
        assert headings == TEMPLATE, (heading, headings)
        table = body.split("### Table", 1)[1].split("### Verdict", 1)[0]
        assert "\n|---" in table, f"{heading}: no table under ### Table"
        assert f"(history.md#{anchor})" in body and anchor in history, f"{heading}: no link to its history"
    assert "TBD" not in text and "TODO" not in text


def test_sections_run_newest_first() -> None:
    newest = [max(DATE.findall(body.split("### Machine", 1)[1].split("### Table", 1)[0]))
              for _, _, body in sections(results())]
    assert newest == sorted(newest, reverse=True), newest


def test_headline_table_has_one_row_per_section_and_its_json_exists() -> None:
    text = results()
    head = text.split("## Headline figures", 1)[1].split("<a id=", 1)[0]
    rows = [line for line in head.splitlines() if line.startswith("| [")]
    linked = [re.match(r"\| \[[^\]]+\]\(#([^)]+)\)", row).group(1) for row in rows]
    assert linked == [a for a, _, _ in sections(text)]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 7 and all(cells), row  # what, figure, code, machine, date, command, JSON
        assert DATE.search(cells[4]) and cells[5].startswith("`"), row
        assert ".json" in cells[6] or cells[6] == "(no JSON yet)", row
    named = set(re.findall(r"[\w.-]+\.json", text))
    stored = {p.name for p in (BENCH / "results").glob("*.json")}
    assert named <= stored, named - stored
    # and nothing stored is left unexplained: each JSON is named in the record or its history
    everything = text + (BENCH / "history.md").read_text(encoding="utf-8")
    assert {n for n in stored if n not in everything} == set()

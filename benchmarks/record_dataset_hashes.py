"""Record the catalog entries of the benchmark sets on the Hub: one command, on a machine that can reach it.

    python benchmarks/record_dataset_hashes.py                          # every set with a Hub copy
    python benchmarks/record_dataset_hashes.py Urban100 B100            # some of them
    python benchmarks/record_dataset_hashes.py Urban100 --revision main # the commit main points to now

For each set: its archive is downloaded as ``sst`` downloads it (the Hugging Face cache, HF_ENDPOINT and
tokens as usual) at the catalog's commit, or at ``--revision`` (a branch is pinned to the commit it names
now); the archive's sha256 and size are computed, its images unpacked and their pixels hashed as ``sst eval``
reads them (:func:`sst_cli.evaluation.fetch.image_pixel_sha256`). Printed: the ``HubArchive(...)`` entry to
paste into ``sst_cli/evaluation/catalog.py``, and where it differs from what the catalog records already
(exit status 1 then). Set5 and Set14 must agree with the catalog: their pixels are those of tests/data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def record(name: str, revision: str | None = None) -> tuple[str, list[str]]:
    """The catalog source text for benchmark ``name`` and how it differs from the recorded entry."""
    from sst_cli.evaluation import fetch
    from sst_cli.evaluation.catalog import CATALOG
    from sst_cli.model import hub

    bench = CATALOG[name]
    a = bench.archive
    if a is None:
        raise SystemExit(f"{name} has no Hub copy in the catalog: {bench.obtain}")
    source = hub.HubFile(a.repo_id, a.filename, revision or a.revision, "dataset")
    path = hub.fetch_hub(source)  # checked against the Hub's own LFS sha256
    commit = hub._commit_of(str(path), source)  # the snapshot folder the cache filed it under
    sha256, size = fetch.file_sha256(path), path.stat().st_size
    with tempfile.TemporaryDirectory() as tmp:
        pixels = {p.stem: fetch.image_pixel_sha256(p) for p in fetch.unpack_images(path, Path(tmp) / "HR")}
    differs = []
    if a.revision not in (None, commit):
        differs.append(f"commit {commit}, recorded {a.revision}")
    if a.sha256 not in (None, sha256):
        differs.append(f"archive sha256 {sha256}, recorded {a.sha256}")
    if a.pixels is not None and pixels != a.pixels:
        changed = sorted(k for k in pixels.keys() & a.pixels.keys() if pixels[k] != a.pixels[k])
        differs.append(f"pixels of {', '.join(changed) or 'none'} differ, missing {sorted(a.pixels.keys() - pixels.keys())}, "
                       f"extra {sorted(pixels.keys() - a.pixels.keys())}")
    constant = name.upper().replace("-", "_") + "_PIXELS"
    lines = [f"# {name}: {len(pixels)} images, archive {size:,} bytes, {source.repo_id} at {commit}",
             f"{constant} = {{"]
    lines += [f'    "{stem}": "{value}",' for stem, value in sorted(pixels.items())]
    lines += ["}", f'HubArchive("{a.repo_id}", "{a.filename}", "{commit}",',
              f'           "{sha256}", {constant}, {size})']
    return "\n".join(lines), differs


def main(argv: list[str] | None = None) -> int:
    from sst_cli.errors import SSTError
    from sst_cli.evaluation.catalog import CATALOG

    hub_sets = [n for n, b in CATALOG.items() if b.archive is not None]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"sets to record (default: {', '.join(hub_sets)})")
    parser.add_argument("--revision", help="a branch, tag or commit instead of the catalog's commit")
    args = parser.parse_args(argv)
    status = 0
    for name in args.names or hub_sets:
        try:
            text, differs = record(name, args.revision)
        except SSTError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(text)
        for d in differs:
            print(f"# DIFFERS from the catalog: {d}")
            status = 1
        print()
    return status


if __name__ == "__main__":
    sys.exit(main())

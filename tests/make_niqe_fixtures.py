"""Make NIQE's data from BasicSR's official code. Not a test: pytest never runs it.

    .venv/bin/python tests/make_niqe_fixtures.py [--shared ../shared]

Needs the read-only reference folder next to the repository (``../shared/reference/official``: BasicSR's
``basicsr/metrics/niqe.py`` and its parameter file, Apache-2.0); it is put on ``sys.path`` and run as it is,
nothing of it is copied into this repository. It writes:

- ``sst_cli/data/niqe/niqe_pristine.npz``: ``mu_pris_param`` (1, 36) and ``cov_pris_param`` (36, 36), float64,
  the two arrays of BasicSR's ``niqe_pris_params.npz`` unchanged (its third array, the Gaussian window, is not
  copied: sst computes it). Written byte-reproducibly (fixed zip timestamps), so its sha256 is a fact of the
  arrays (see sst_cli/data/niqe/README.md).
- ``tests/data/metrics/niqe_basicsr.json``: BasicSR's ``calculate_niqe`` of every case in ``CASES`` (images in
  tests/data or made by :func:`case_image` from a formula), and of the bicubic x4 SR of Set5 that
  ``sst eval -m bicubic --dataset Set5 -s 4 --metrics niqe`` measures (BasicSR's MATLAB-style ``imresize`` of the
  shipped LR, rounded to uint8, crop border 4). Cases BasicSR cannot score (fewer than two textured 96x96
  blocks) are stored with the error BasicSR raised. Also the sha256 of BasicSR's two pristine arrays and its
  7x7 Gaussian window, which sst computes itself.

tests/test_niqe.py reads both files, and compares sst with the official code live when ``../shared`` is there.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
PRISTINE = REPO / "sst_cli" / "data" / "niqe" / "niqe_pristine.npz"
REFERENCE = DATA / "metrics" / "niqe_basicsr.json"

# (case id, image spec, crop border). Image specs: a path under tests/data, "pattern:HxW:seed" (a textured
# RGB image from a formula), "gray-pattern:HxW:seed" (the same, one channel), "half-flat:HxW:seed" (the left half
# textured, the right half one grey) or "flat:HxW:value" (one grey).
CASES: list[tuple[str, str, int]] = [
    *[(f"set5-hr-{n}-c{c}", f"Set5/HR/{n}.png", c) for n in ("baby", "bird", "butterfly", "head", "woman") for c in (0, 4)],
    ("set5-lr-x2-baby-c0", "Set5/LR_bicubic/X2/babyx2.png", 0),  # the only Set5 LR with two 96x96 blocks
    ("set5-lr-x2-head-c0", "Set5/LR_bicubic/X2/headx2.png", 0),  # 140x140: one block, undefined
    ("set14-bridge-gray-c0", "Set14/HR/bridge.png", 0),  # a single-channel PNG, read as 3 channels
    ("set14-bridge-gray-c4", "Set14/HR/bridge.png", 4),
    ("pattern-odd-203x299-c0", "pattern:203x299:1", 0),
    ("pattern-odd-203x299-c3", "pattern:203x299:1", 3),
    ("pattern-odd-291x197-c4", "pattern:291x197:2", 4),
    ("gray-pattern-2d-200x250-c0", "gray-pattern:200x250:3", 0),  # a (H, W) array, as calculate_niqe takes it
    ("half-flat-200x400-c0", "half-flat:200x400:5", 0),  # flat blocks give NaN features, left out of the fit
    ("flat-grey-160x224-c0", "flat:160x224:128", 0),  # no texture: undefined
    ("small-90x300-c0", "pattern:90x300:4", 0),  # under 96 rows: undefined
]


def case_image(spec: str) -> np.ndarray:
    """The uint8 image of a case: (H, W, 3) RGB, or (H, W) for "gray-pattern". Deterministic everywhere:
    integer arithmetic only (no random generator whose stream could change between numpy versions)."""
    kind, _, rest = spec.partition(":")
    if not rest:  # a file in tests/data, read as sst reads it (RGB; grey repeated to 3 channels)
        from sst_cli.evaluation.datasets import read_rgb_u8

        return read_rgb_u8(DATA / spec)[0]
    size, value = rest.split(":")
    h, w = (int(v) for v in size.split("x"))
    if kind == "flat":
        return np.full((h, w, 3), int(value), np.uint8)
    seed = int(value)
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    planes = []
    for c in range(3):
        k = seed * 7 + c * 3 + 1
        smooth = (x * (5 + k) + y * (3 + 2 * k)) // 4 + ((x // (9 + k)) * (y // 11) * 13)  # ramps and tiles
        grain = (x * 7919 + y * 104729 + (x * y) * (31 + k) + k * 1009) % 61  # a deterministic hash as noise
        planes.append((smooth + grain) % 256)
    img = np.stack(planes, axis=2).astype(np.uint8)
    if kind == "half-flat":
        img[:, w // 2:] = 100
    return img[..., 0] if kind == "gray-pattern" else img


def _official(shared: Path):
    sys.path.insert(0, str(shared / "reference" / "official"))
    from basicsr.metrics.niqe import calculate_niqe
    from basicsr.utils.matlab_functions import imresize

    return calculate_niqe, imresize


def basicsr_niqe(calculate_niqe, img: np.ndarray, crop_border: int) -> float:
    """BasicSR's NIQE of an sst-style image: RGB goes in as BGR, as cv2.imread gives it to BasicSR."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty means in flat blocks, as BasicSR always warns
        return calculate_niqe(img[..., ::-1] if img.ndim == 3 else img, crop_border)


def bicubic_sr(imresize, lr_u8: np.ndarray, scale: int) -> np.ndarray:
    """BasicSR's MATLAB-style bicubic of a uint8 RGB image, rounded to uint8 (the `bicubic` model's output)."""
    out = imresize(lr_u8.astype(np.float32) / 255.0, scale)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def write_pristine(shared: Path) -> Path:
    """The two arrays of BasicSR's parameter file as .npz, with fixed zip timestamps (same bytes every time)."""
    src = np.load(shared / "reference" / "official" / "basicsr" / "metrics" / "niqe_pris_params.npz")
    PRISTINE.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(PRISTINE, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in ("mu_pris_param", "cov_pris_param"):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(src[key], dtype=np.float64), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
    return PRISTINE


def write_reference(shared: Path) -> Path:
    calculate_niqe, imresize = _official(shared)
    cases = []
    for case_id, spec, crop in CASES:
        entry: dict = {"id": case_id, "image": spec, "crop_border": crop}
        try:
            entry["niqe"] = basicsr_niqe(calculate_niqe, case_image(spec), crop)
        except Exception as exc:  # noqa: BLE001 - what BasicSR raises for an image NIQE cannot score
            entry["niqe"], entry["error"] = None, f"{type(exc).__name__}: {exc}"
        cases.append(entry)
        print(case_id, entry.get("niqe"), entry.get("error", ""))
    bicubic = {}
    for name in ("baby", "bird", "butterfly", "head", "woman"):
        lr = case_image(f"Set5/LR_bicubic/X4/{name}x4.png")
        bicubic[name] = basicsr_niqe(calculate_niqe, bicubic_sr(imresize, lr, 4), 4)
    import hashlib

    import scipy

    params = np.load(shared / "reference" / "official" / "basicsr" / "metrics" / "niqe_pris_params.npz")
    ref = {
        "note": "BasicSR's calculate_niqe (basicsr/metrics/niqe.py, run as it is) on the cases of "
                "tests/make_niqe_fixtures.py; RGB images passed as BGR, as cv2.imread gives them to BasicSR",
        "official_commit": (shared / "reference" / "official" / "COMMIT").read_text().strip(),
        "numpy": np.__version__, "scipy": scipy.__version__, "generator": "tests/make_niqe_fixtures.py",
        "pristine_sha256": {k: hashlib.sha256(np.ascontiguousarray(params[k]).tobytes()).hexdigest()
                            for k in ("mu_pris_param", "cov_pris_param")},
        "gaussian_window": params["gaussian_window"].tolist(),  # BasicSR's, which sst computes itself
        "cases": cases,
        "bicubic_x4_set5": {"crop_border": 4, "images": bicubic, "mean": float(np.mean(list(bicubic.values()))),
                            "how": "BasicSR imresize(LR/255, 4) of the shipped Set5 LR_bicubic/X4, rounded to uint8"},
    }
    REFERENCE.write_text(json.dumps(ref, indent=1) + "\n")
    return REFERENCE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the reference folder")
    args = parser.parse_args(argv)
    print("wrote", write_pristine(args.shared))
    print("wrote", write_reference(args.shared))


if __name__ == "__main__":
    main()

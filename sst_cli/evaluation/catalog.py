"""The benchmark sets sst knows by name, and where a verified copy of each can be downloaded: plain data.

Each entry says the names a set goes by, how many images it has, its licence and how to obtain it by hand, and,
for sets with a
public copy on the Hugging Face Hub, the archive of HR images there (``data/<Name>_HR.tar.gz`` in the dataset
repositories of eugenesiow) pinned to a commit, with what a download is checked against:

- ``sha256``: the archive file's sha256 (the Hub's LFS object id);
- ``pixels``: per image (file stem), the sha256 of its decoded pixels, as ``sst eval`` reads them (uint8 RGB,
  grey repeated to three channels, alpha dropped): ``sha256(b"<H>x<W>x3\\n" + array.tobytes())``, see
  :func:`sst_cli.evaluation.fetch.pixel_sha256`. A copy that was re-encoded, cropped or converted is caught
  even when its archive is not the recorded one.

A set is downloaded only when its commit and at least one of the two checks are recorded here; ``None``
means "not recorded yet" and such a set is refused, never fetched unverified. The values below were read
from the Hub's pages (cited per entry); the Set5 and Set14 pixels are those of ``tests/data``, which the
downloaded copies must equal. ``python benchmarks/record_dataset_hashes.py NAME`` prints a complete entry
from a machine that can reach the Hub.

Imports nothing from sst, so ``sst datasets list`` stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HubArchive:
    """An archive of a set's HR images in a Hub *dataset* repository."""

    repo_id: str
    filename: str
    revision: str | None  # the commit (40 hex digits) recorded; None: not recorded yet
    sha256: str | None  # of the archive file
    pixels: dict[str, str] | None  # image stem -> pixel sha256; None: not recorded yet
    approx_bytes: int  # the archive's size as the Hub lists it (rounded); shown, never checked

    @property
    def url(self) -> str:
        return f"https://huggingface.co/datasets/{self.repo_id}"


@dataclass(frozen=True)
class Benchmark:
    name: str  # canonical: the name tables and reports use
    aliases: tuple[str, ...]  # folder names it goes by in the wild (matched case-insensitively), name first
    images: int | None
    licence: str  # in a few words, for `sst datasets`
    obtain: str  # how to get it by hand: an imperative phrase with a URL
    archive: HubArchive | None = None  # None: sst never downloads it (licence, or no public copy)


SET5_PIXELS = {
    "baby": "262eb0ce5e7be546acd193ac825951c70759ec5bbf7ceca0341f0cb1598476a8",
    "bird": "2ff27fb74c9867dfad423ad6bbb10bbbde0367b526fc2e25f3d5f5d4851142a9",
    "butterfly": "ffaa48950dd692da51297644769a87ea1d3910af718bb41ac5c55a38145fbb55",
    "head": "5b2034ca5b9caff98c48d012717af35fc7b4316d84ebb184d653c07f78bf426a",
    "woman": "55f0451767cd6e5488c12a8e4c6c8271bab75b6891941cdceda477ffe298a344",
}

SET14_PIXELS = {
    "baboon": "d0e460106549380a80466197c8fd68b87375c9ce6dfb5f12b81227ccc4020e93",
    "barbara": "b457c26f4373e4607dc8549c0970ed9d36cf8f942d87641355ba11afb83ffbbf",
    "bridge": "7b48fa845c7c99e874c1a62ca288880c229780de3878cc3ee85245d3e79fb362",  # grey: as read, 3 equal channels
    "coastguard": "3b5ad7909ce4ef6aee5ab472f55651922a98f2399bfc236747d34240d732de6b",
    "comic": "c88da8d6e94dd4d567c09d7e53ef13f9806183c662f2f795a4680db1507dc946",
    "face": "d81cda34830a3d047d8f2923d5606033b4f0d0a6a6f7e0d0a3868e56e9b93dd8",
    "flowers": "73310079ec7faab5e434118d2f3d387a014cc0da5cebef96989b9b7431659c8f",
    "foreman": "e36df41e55f9490b82a3d0c9340c9e97b1e6500cfcc17c98f4b3bf83b465f27d",
    "lenna": "39a1d3d1c5a6d81bcd6ced69742a11f417b43026cef63ec9a91ae1ad48729660",
    "man": "d81a5f7fedaa57ac60c359d6649e4b2586d16286316fb9a1680e689ad070c107",
    "monarch": "e58f69c9f2adc08468636f9b8a25078447b6ad41a82dfe4a9a1d1140f60e4c08",
    "pepper": "95ff3ce5d0fea065dc3e409642248603cc42f512c28871cf3497969a06a7a245",
    "ppt3": "3e8828f0e297a52f7a527f00ac4c9030c252b94028bed4a1af6f88f66542c2bb",
    "zebra": "a7279308f0a676173cf1d9f6cea4a5a99d97b858f938e3acb8848f0cfffa70b4",
}

# Licences: the Hub cards (Set5, Set14: other-academic-use; Urban100: cc-by-4.0), BSDS's terms for B100,
# the sites for the others. Commits: the one that added data/ to each repository ("Add data.", July 2021; data/ has no later commit),
# from https://huggingface.co/datasets/eugenesiow/<Name>/commit/<sha>. Archive sha256: the "Git LFS Details"
# of https://huggingface.co/datasets/eugenesiow/Set5/blob/bcb97ac28c8a5f9113825f8d163564e16513f3ed/data/Set5_HR.tar.gz
# and https://huggingface.co/datasets/eugenesiow/BSD100/blob/refs%2Fpr%2F4/data/BSD100_HR.tar.gz.
CATALOG: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("Set5", ("Set5",),
              5, "academic use",
              "download data/Set5_HR.tar.gz from https://huggingface.co/datasets/eugenesiow/Set5",
              HubArchive("eugenesiow/Set5", "data/Set5_HR.tar.gz", "325646fe7cc8811e312562437885c5c018c74966",
                         "260fc447296333f6c2716bcd65513968c33b666f21a905537ee3330c51a1945b", SET5_PIXELS, 852_000)),
    Benchmark("Set14", ("Set14",),
              14, "academic use",
              "download data/Set14_HR.tar.gz from https://huggingface.co/datasets/eugenesiow/Set14",
              HubArchive("eugenesiow/Set14", "data/Set14_HR.tar.gz", "5c964717e61b4931236a6dd5561750d11e5a7abb",
                         None, SET14_PIXELS, 4_980_000)),
    Benchmark("B100", ("B100", "BSD100", "BSDS100"),
              100, "non-commercial research",
              "download data/BSD100_HR.tar.gz from https://huggingface.co/datasets/eugenesiow/BSD100",
              HubArchive("eugenesiow/BSD100", "data/BSD100_HR.tar.gz", "600666edcba3b8386c367fcb03e72424a1ff9f86",
                         "333495ccded04a0db52b33361140821ea7e0d8af8dfb54b58df79a00010858d6", None, 27_200_000)),
    Benchmark("Urban100", ("Urban100",),
              100, "CC BY 4.0",
              "download data/Urban100_HR.tar.gz from https://huggingface.co/datasets/eugenesiow/Urban100",
              HubArchive("eugenesiow/Urban100", "data/Urban100_HR.tar.gz", "57309de03db02ac12ee09ad6127e7b815c211328",
                         None, None, 135_000_000)),
    Benchmark("Manga109", ("Manga109",),
              109, "academic, no redistribution",
              "request it from its authors (academic use only) at http://www.manga109.org/en/download.html"),
    Benchmark("DIV2K-val", ("DIV2K-val", "DIV2K_val", "DIV2K-valid", "DIV2K_valid", "DIV2K"),
              100, "academic research",
              "download DIV2K_valid_HR from https://data.vision.ee.ethz.ch/cvl/DIV2K/"),
    Benchmark("LSDIR-val", ("LSDIR-val", "LSDIR_val", "LSDIR-valid", "LSDIR_valid", "LSDIR"),
              None, "see its site",
              "download the validation HR images from https://ofsoundof.github.io/lsdir-data/"),
)}

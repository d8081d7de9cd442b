"""Hostile .zip data sets (issue 23): archives that lie about their size (zip bombs, headers that declare
less or more than the member holds) and members that cannot be read (encrypted, a compression method
Python's zipfile lacks, damaged data). Each is refused with one line naming the archive and the member,
or left out with --skip-unreadable; no member ever inflates past --max-image-mb in memory.

The archives are built here: tiny PNGs in train/<class>/ and test/<class>/, then a member added or its
local and central headers patched (flag, method, CRC, sizes) as a hostile or broken tool would leave them.
Segmentation pairs are read from folders only (data/pairs.py opens no zip), so only image folders are tried.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import infopro.data.archive as archive
from infopro.cli import main
from infopro.data import DataOptions, FileItems, make_loader, open_data
from infopro.errors import InfoProError

MB = 1 << 20
CLASSES = ("a", "b")
# ResNet-20 cut in 2, one epoch of 8x8 images: the CLI tests only need a run to start (or be refused).
TINY_RUN = ["--dataset", "folder", "--arch", "resnet20", "--K", "2", "--cuts", "even", "--batch-size", "4",
            "--epochs", "1", "--device", "cpu", "--quiet"]


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def make_zip(path: Path, extra: dict[str, bytes] | None = None, per_class: int = 3,
             method: int = zipfile.ZIP_DEFLATED) -> Path:
    """train/{a,b}/i.png and test/{a,b}/i.png (per_class each), then `extra` (name -> bytes), all with `method`."""
    with zipfile.ZipFile(path, "w") as zf:
        seed = 0
        for split in ("train", "test"):
            for c in CLASSES:
                for i in range(per_class):
                    zf.writestr(f"{split}/{c}/{i}.png", png(seed), compress_type=method)
                    seed += 1
        for name, data in (extra or {}).items():
            zf.writestr(name, data, compress_type=method)
    return path


# Field offsets (struct format) in a local file header (PK\3\4) and a central directory entry (PK\1\2).
LOCAL = {"flag": (6, "<H"), "method": (8, "<H"), "crc": (14, "<I"), "compress_size": (18, "<I"),
         "file_size": (22, "<I")}
CENTRAL = {"flag": (8, "<H"), "method": (10, "<H"), "crc": (16, "<I"), "compress_size": (20, "<I"),
           "file_size": (24, "<I")}


def patch(path: Path, name: str, where: tuple[str, ...] = ("local", "central"), **fields: int) -> None:
    """Overwrite header fields of member `name` (both headers unless `where` says otherwise)."""
    with zipfile.ZipFile(path) as zf:
        local, pos = zf.getinfo(name).header_offset, zf.start_dir
    data = bytearray(path.read_bytes())
    while data[pos:pos + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack("<HHH", data[pos + 28:pos + 34])
        if data[pos + 46:pos + 46 + n].decode() == name:
            break
        pos += 46 + n + m + k
    else:
        raise AssertionError(f"{name} not in the central directory")
    assert data[local:local + 4] == b"PK\x03\x04"
    for key, value in fields.items():
        for header, offset, table in (("local", local, LOCAL), ("central", pos, CENTRAL)):
            if header in where:
                at, fmt = table[key]
                struct.pack_into(fmt, data, offset + at, value)
    path.write_bytes(bytes(data))


def compressed_range(path: Path, name: str) -> tuple[int, int]:
    """(start, length) of member `name`'s compressed bytes in the archive."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    data = path.read_bytes()
    n, m = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + n + m, info.compress_size


def options(**kw) -> DataOptions:
    return DataOptions(progress=False, **kw)


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert len(text.splitlines()) == 1 and "Traceback" not in text
    return text


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(["train", *TINY_RUN, *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()[-1].removeprefix("infopro train: error: ")


# ---- class 1: archives that lie about their size ----------------------------------------------------------


def test_a_normal_archive_reads_and_screening_changes_nothing(tmp_path):
    z = make_zip(tmp_path / "ok.zip")
    data = open_data("folder", z, options(path="memory", max_image_mb=0.5))
    assert data.train.images.shape == (6, 8, 8, 3) and len(data.test) == 6
    stored = make_zip(tmp_path / "stored.zip", method=zipfile.ZIP_STORED)
    again = open_data("folder", stored, options(path="memory", max_image_mb=0.5))
    assert np.array_equal(again.train.images, data.train.images)


@pytest.mark.parametrize("limit_mb, member, reason", [
    (1, bytes(2 * MB), "declares 2 MB uncompressed, over the limit of 1 MB per image (--max-image-mb 3"),
    # under the limit, but over 1/16 of it at deflate's ~1000:1 ratio of zeros
    (1, bytes(256 * 1024), "a zip bomb's ratio (over 500:1; --max-image-mb 5 would admit it"),
])
def test_a_member_over_the_limit_or_at_a_bombs_ratio_is_refused_when_the_set_opens(tmp_path, limit_mb, member, reason):
    z = make_zip(tmp_path / "bomb.zip", {"train/a/zeros.bmp": member})
    with pytest.raises(InfoProError) as error:
        open_data("folder", z, options(max_image_mb=limit_mb))
    text = one_line(error)
    assert text.startswith(f"{z} has 1 unreadable member(s): train/a/zeros.bmp (") and reason in text
    assert "raise --max-image-mb" in text and "--skip-unreadable" in text
    # A limit that admits it: the set opens (the member is then read like any other, here not an image).
    assert len(open_data("folder", z, options(max_image_mb=100, image_size=8, channels=3, path="stream",
                                              mean=(0.5,) * 3, std=(0.5,) * 3)).train) == 7


def test_a_header_that_declares_gigabytes_is_refused_at_the_default_limit(tmp_path):
    z = make_zip(tmp_path / "lies-big.zip")
    patch(z, "test/b/1.png", file_size=3_000_000_000)  # a small PNG whose headers claim 2.8 GB
    with pytest.raises(InfoProError) as error:
        open_data("folder", z, options())
    text = one_line(error)
    assert "test/b/1.png (declares 2.79 GB uncompressed, over the limit of 256 MB per image" in text
    assert "--max-image-mb 2862 would admit it" in text


def test_a_header_that_declares_less_than_the_member_inflates_to_is_cut_off_not_read_whole(tmp_path, capsys):
    """20 MB of zeros whose headers say 1 KB: zipfile stops at the declared size, the CRC then fails, and no
    more than about a chunk is ever held."""
    z = make_zip(tmp_path / "lies-small.zip", {"train/b/liar.png": bytes(20 * MB)})
    patch(z, "train/b/liar.png", file_size=1024)
    items = FileItems(["train/b/liar.png"], np.zeros(1, dtype=np.int64), str(z), archive.max_bytes_of(256))
    tracemalloc.start()
    try:
        with pytest.raises(InfoProError) as error:
            items.image(0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MB
    assert one_line(error).startswith(f"cannot read image {z}:train/b/liar.png (damaged: its data does not match "
                                      "its CRC-32")
    # Through the CLI: the header scan meets it before the run starts.
    code, line = cli(capsys, "--data-dir", str(z), "--out", str(tmp_path / "run"))
    assert code == 2 and "train/b/liar.png" in line and line.startswith("cannot read image ")


def test_the_stream_check_cuts_a_member_off_at_the_limit_whatever_the_headers_say(tmp_path, monkeypatch):
    """Were the header check fooled (here: switched off), inflation still stops one byte past the limit."""
    z = make_zip(tmp_path / "z.zip", {"train/a/big.png": bytes(30 * MB)})
    monkeypatch.setattr(archive, "member_problem", lambda info, max_bytes: None)
    tracemalloc.start()
    try:
        with zipfile.ZipFile(z) as zf, pytest.raises(InfoProError) as error:
            archive.read_member(zf, str(z), "train/a/big.png", MB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MB
    assert one_line(error) == (f"cannot read image {z}:train/a/big.png (inflates past the limit of 1 MB per "
                               "image); if the file is genuine pass a larger --max-image-mb, else remove it")
    with zipfile.ZipFile(z) as zf, pytest.raises(InfoProError, match="a zip bomb's ratio"):
        archive.read_member(zf, str(z), "train/a/big.png", 64 * MB)  # under 64 MB, but 1000:1 past 4 MB


def test_the_cli_refuses_a_bomb_with_exit_2_and_says_how_to_admit_it(tmp_path, capsys):
    z = make_zip(tmp_path / "bomb.zip", {"train/a/zeros.png": bytes(3 * MB)})
    code, line = cli(capsys, "--data-dir", str(z), "--out", str(tmp_path / "run"), "--max-image-mb", "2")
    assert code == 2 and line.startswith(f"{z} has 1 unreadable member(s): train/a/zeros.png (declares 3 MB")
    assert "--max-image-mb 4 would admit it" in line and not (tmp_path / "run" / "checkpoint.pt").exists()
    code, line = cli(capsys, "--data-dir", str(z), "--out", str(tmp_path / "run"), "--max-image-mb", "0")
    assert code == 2 and line.startswith("--max-image-mb must be > 0, got 0")


# ---- class 2: members that cannot be read ---------------------------------------------------------------


def broken_zip(path: Path) -> Path:
    """Four unreadable members in train/, one in test/: encrypted (the flag, and WinZip's AES method 99),
    deflate64 (method 9), empty, and PPMd (98)."""
    z = make_zip(path, {"train/a/enc.png": png(90), "train/a/aes.png": png(91), "train/b/d64.png": png(92),
                        "train/b/empty.png": b"", "test/a/ppmd.png": png(93)}, method=zipfile.ZIP_STORED)
    patch(z, "train/a/enc.png", flag=0x1)
    patch(z, "train/a/aes.png", flag=0x1, method=99)
    patch(z, "train/b/d64.png", method=9)
    patch(z, "test/a/ppmd.png", method=98)
    return z


def test_unreadable_members_are_named_with_their_reasons_when_the_set_opens(tmp_path):
    z = broken_zip(tmp_path / "broken.zip")
    with pytest.raises(InfoProError) as error:
        open_data("folder", z, options())
    assert one_line(error) == (
        f"{z} has 5 unreadable member(s): train/a/aes.png (encrypted (a password is needed)), train/a/enc.png "
        "(encrypted (a password is needed)), train/b/d64.png (compressed with deflate64 (method 9), which "
        "Python's zipfile cannot read) and 2 more; re-pack them (stored or deflated, no password); or pass "
        "--skip-unreadable to leave them out")


def test_skip_unreadable_leaves_them_out_and_says_so(tmp_path, capsys):
    z = broken_zip(tmp_path / "broken.zip")
    data = open_data("folder", z, options(path="memory", skip_unreadable=True))
    assert len(data.train) == 6 and len(data.test) == 6
    err = capsys.readouterr().err.splitlines()
    assert err == ["skipped 4 unreadable files of train: train/a/aes.png (encrypted (a password is needed)), "
                   "train/a/enc.png (encrypted (a password is needed)), train/b/d64.png (compressed with deflate64 "
                   "(method 9), which Python's zipfile cannot read) and 1 more",
                   "skipped 1 unreadable files of test: test/a/ppmd.png (compressed with PPMd (method 98), which "
                   "Python's zipfile cannot read)"]
    # The decoded set is that of the archive without them.
    clean = open_data("folder", make_zip(tmp_path / "clean.zip"), options(path="memory"))
    assert np.array_equal(data.train.images, clean.train.images)
    assert np.array_equal(data.train.labels, clean.train.labels)


def test_the_cli_refuses_unreadable_members_then_skips_them_with_the_flag(tmp_path, capsys):
    z = broken_zip(tmp_path / "broken.zip")
    code, line = cli(capsys, "--data-dir", str(z), "--out", str(tmp_path / "run"))
    assert code == 2 and line.startswith(f"{z} has 5 unreadable member(s): train/a/aes.png (encrypted")
    assert line.endswith("or pass --skip-unreadable to leave them out")
    assert main(["train", *TINY_RUN, "--data-dir", str(z), "--out", str(tmp_path / "run"), "--skip-unreadable"]) == 0
    assert "skipped 4 unreadable files of train: " in capsys.readouterr().err
    assert "skip_unreadable: true" in (tmp_path / "run" / "config.yaml").read_text()  # a resume skips them too


def damaged_zip(path: Path) -> Path:
    """Members whose headers look fine but whose data is damaged: a wrong CRC, invalid deflate data, deflate
    data cut short (the directory's compressed size lies small), and a local header naming another file."""
    z = make_zip(path, {"train/a/crc.png": png(80), "train/a/garbage.png": png(81), "train/b/short.png": png(82),
                        "train/b/renamed.png": png(83)})
    patch(z, "train/a/crc.png", crc=0x12345678)
    start, length = compressed_range(z, "train/a/garbage.png")
    data = bytearray(z.read_bytes())
    data[start:start + length] = b"\xff" * length  # not a deflate stream
    start, length = compressed_range(z, "train/b/renamed.png")
    name_at = zipfile.ZipFile(z).getinfo("train/b/renamed.png").header_offset + 30
    data[name_at:name_at + 5] = b"TRAIN"
    z.write_bytes(bytes(data))
    patch(z, "train/b/short.png", where=("central",), compress_size=compressed_range(z, "train/b/short.png")[1] // 2)
    return z


@pytest.mark.parametrize("member, reason", [
    ("train/a/crc.png", "damaged: its data does not match its CRC-32"),
    ("train/a/garbage.png", "damaged: error: Error -3 while decompressing data"),
    ("train/b/short.png", "damaged: "),
    ("train/b/renamed.png", "damaged: File name in directory 'train/b/renamed.png' and header"),
])
def test_a_damaged_member_is_one_line_naming_it(tmp_path, member, reason):
    z = damaged_zip(tmp_path / "damaged.zip")
    index = open_data("folder", z, options(path="stream", image_size=8, channels=3, mean=(0.5,) * 3,
                                           std=(0.5,) * 3)).train
    with pytest.raises(InfoProError) as error:
        index.image(index.paths.index(member))
    assert one_line(error).startswith(f"cannot read image {z}:{member} ({reason}")


def test_a_damaged_member_met_in_a_stream_epoch_is_one_line_from_the_worker(tmp_path, capsys):
    z = make_zip(tmp_path / "late.zip", {"train/a/crc.png": png(80)})
    patch(z, "train/a/crc.png", crc=0)
    data = open_data("folder", z, options(path="stream", image_size=8, channels=3, mean=(0.5,) * 3,
                                          std=(0.5,) * 3))
    with pytest.raises(InfoProError) as error:
        list(make_loader(data, data.train, "cpu", 7, train=True, seed=0, workers=1))
    assert one_line(error).startswith(f"cannot read image {z}:train/a/crc.png (damaged: its data does not match")
    # The CLI on the stream path (no header scan: --image-size, --channels, --mean/--std given): exit 2, one line.
    code, line = cli(capsys, "--data-dir", str(z), "--out", str(tmp_path / "run"), "--data-path", "stream",
                     "--workers", "1", "--image-size", "8", "--channels", "3", "--mean", "0.5", "0.5", "0.5",
                     "--std", "0.5", "0.5", "0.5")
    assert code == 2 and line.startswith(f"cannot read image {z}:train/a/crc.png (damaged")

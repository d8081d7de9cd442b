"""Issue 23, classes 4-6: folder entries that are neither folders nor files, class names that are not UTF-8 text
(or hold control characters), and every Pillow mode a real data set brings (scaled, never clipped)."""

from __future__ import annotations

import io
import json
import os
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import infopro
from infopro.cli import main
from infopro.data import DataOptions, open_data
from infopro.data.items import FileItems, convert, mode_channels, to_8bit
from infopro.data.pairs import read_mask
from infopro.data.prepare import decode_for_eval
from infopro.data.segmentation import SegmentationOptions, open_segmentation
from infopro.data.stream import StreamDataset
from infopro.errors import InfoProError
from infopro.plots import write_class_iou_png

TINY = ["--arch", "resnet20", "--K", "2", "--cuts", "even", "--method", "greedy", "--epochs", "1",
        "--batch-size", "4", "--device", "cpu", "--quiet", "--dataset", "folder"]
OPTIONS = DataOptions(path="memory", progress=False)


def image(path: Path, value: int = 0, size: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8), "L").save(path)


def folder_set(root: Path, classes=("a", "b"), splits=("train", "test"), per_class: int = 2) -> Path:
    for split in splits:
        for k, c in enumerate(classes):
            for i in range(per_class):
                image(root / split / c / f"{i}.png", (60 * k + i) % 256)
    return root


def one_line_refusal(call, *needles: str) -> str:
    with pytest.raises(InfoProError) as caught:
        call()
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    for needle in needles:
        assert needle in message, message
    return message


# ---- class 4: entries that are neither folders nor files -------------------------------------------------------

def make_odd(path: Path, kind: str) -> str:
    """An entry at `path` that is neither a folder nor a file; returns the words the refusal uses for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "broken link":
        path.symlink_to(path.parent / "nowhere")
        return "broken symbolic link"
    if kind == "link loop":
        path.symlink_to(path.name)  # a link to itself
        return "symbolic link loop"
    if kind == "fifo":
        os.mkfifo(path)
        return "FIFO"
    if kind == "socket":
        cwd = os.getcwd()
        os.chdir(path.parent)  # a socket's path is limited to ~100 bytes: bind it by its short name
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.bind(path.name)
        finally:
            os.chdir(cwd)
        return "a socket"
    raise AssertionError(kind)


ODD_KINDS = ["broken link", "link loop", "fifo", "socket"]


@pytest.mark.parametrize("kind", ODD_KINDS)
def test_an_odd_class_folder_is_refused_by_name(tmp_path, kind):
    root = folder_set(tmp_path / "d", classes=("a", "b", "c"))
    words = make_odd(root / "train" / "zebra", kind)
    one_line_refusal(lambda: open_data("folder", root, OPTIONS), f"{root}/train/zebra is", words)


@pytest.mark.parametrize("kind", ["broken link", "fifo"])
def test_an_odd_entry_of_the_data_root_or_a_class_folder_is_refused(tmp_path, kind):
    # a broken val/ link would make test/ the only evaluation split without a word
    root = folder_set(tmp_path / "d", splits=("train", "test"))
    words = make_odd(root / "val", kind)
    one_line_refusal(lambda: open_data("folder", root, OPTIONS), f"{root}/val is", words)
    (root / "train").rename(tmp_path / "train")  # no train/ left to recognise the layout by: still named
    make_odd(root / "train", kind)
    one_line_refusal(lambda: open_data("folder", root, OPTIONS), f"{root}/train is", words)
    # a plain ImageFolder root (class folders directly under it), and an image name inside a class folder
    plain = folder_set(tmp_path / "p", splits=("",), classes=("a", "b", "c"))
    make_odd(plain / "b" / "9.png", kind)
    one_line_refusal(lambda: open_data("folder", plain, DataOptions(val_split=0.5, progress=False)),
                     f"{plain}/b/9.png is", words)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="permissions do not bite as root")
def test_a_class_folder_without_permission_is_refused(tmp_path):
    root = folder_set(tmp_path / "d")
    (root / "train" / "b").chmod(0)
    try:
        one_line_refusal(lambda: open_data("folder", root, OPTIONS), f"{root}/train/b", "permission denied")
    finally:
        (root / "train" / "b").chmod(0o755)


def test_links_to_real_folders_are_followed_and_hidden_entries_skipped(tmp_path):
    root = folder_set(tmp_path / "d", classes=("a", "b"))
    folder_set(tmp_path / "elsewhere", classes=("c",), splits=("train", "test"), per_class=3)
    for split in ("train", "test"):
        (root / split / "c").symlink_to(tmp_path / "elsewhere" / split / "c", target_is_directory=True)
        (root / split / ".git").mkdir()  # hidden: skipped, as .DS_Store and a hidden broken link
        (root / split / ".DS_Store").write_bytes(b"\0")
        (root / split / ".gone").symlink_to(tmp_path / "nowhere")
        (root / split / "a" / ".dangling.png").symlink_to(tmp_path / "nowhere")
    data = open_data("folder", root, OPTIONS)
    assert data.classes == ["a", "b", "c"]
    assert np.bincount(data.train.labels).tolist() == [2, 2, 3]
    # a whole split folder behind a link too
    linked = tmp_path / "linked"
    (linked / "train").mkdir(parents=True)
    for c in ("a", "b", "c"):  # c: a link to a link
        (linked / "train" / c).symlink_to(root / "train" / c)
    (linked / "test").symlink_to(root / "test")
    assert open_data("folder", linked, OPTIONS).classes == ["a", "b", "c"]


def test_the_cli_refuses_a_broken_class_link_before_writing(tmp_path, capsys):
    root = folder_set(tmp_path / "d", classes=("a", "b", "c"))
    (root / "train" / "c").rename(tmp_path / "moved")
    (root / "train" / "c").symlink_to(tmp_path / "moved")
    (tmp_path / "moved").rename(tmp_path / "moved-again")  # the link now points nowhere: class c would vanish
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data-dir", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "broken symbolic link" in err[-1] and f"{root}/train/c" in err[-1] and "Traceback" not in "".join(err)
    assert not out.exists()


def seg_pairs(root: Path, splits=("train", "val"), n: int = 2) -> Path:
    """SPLIT/images + SPLIT/masks, 4x4, masks of classes 0 and 1."""
    for split in splits:
        for i in range(n):
            image(root / split / "images" / f"{i}.png", 100 + i)
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8).repeat(2, 0).repeat(2, 1), "L").save(
                root / split / "masks" / f"{i}.png")
    return root


@pytest.mark.parametrize("kind", ["broken link", "link loop", "fifo"])
def test_segmentation_folders_refuse_odd_entries(tmp_path, kind):
    options = SegmentationOptions(progress=False)
    root = seg_pairs(tmp_path / "a")
    words = make_odd(root / "val" / "masks" / "2.png", kind)  # a mask that is not there
    one_line_refusal(lambda: open_segmentation("segfolder", root, options), f"{root}/val/masks/2.png is", words)
    root = seg_pairs(tmp_path / "b", splits=("train",))
    words = make_odd(root / "val", kind)  # the whole val split would vanish
    one_line_refusal(lambda: open_segmentation("segfolder", root, options), f"{root}/val is", words)
    root = seg_pairs(tmp_path / "c")
    words = make_odd(root / "classes.txt", kind)  # the class count would come from the masks instead
    one_line_refusal(lambda: open_segmentation("segfolder", root, options), f"{root}/classes.txt is", words)


def test_segmentation_follows_folder_links_and_refuses_a_loop(tmp_path):
    options = SegmentationOptions(progress=False)
    root = seg_pairs(tmp_path / "d")
    seg_pairs(tmp_path / "more", splits=("train",), n=3)
    (root / "train" / "images" / "more").symlink_to(tmp_path / "more" / "train" / "images")
    (root / "train" / "masks" / "more").symlink_to(tmp_path / "more" / "train" / "masks")
    (root / "train" / "images" / ".cache").symlink_to(tmp_path / "nowhere")  # hidden: skipped
    data = open_segmentation("segfolder", root, options)
    assert len(data.train) == 5
    (root / "train" / "images" / "more" / "up").symlink_to(root / "train" / "images")
    one_line_refusal(lambda: open_segmentation("segfolder", root, options), "images/more/up is a link back to",
                     "a loop")


# ---- class 5: class names ---------------------------------------------------------------------------------------

def test_a_class_folder_name_that_is_not_utf8_is_refused_at_the_start(tmp_path, capsys):
    root = folder_set(tmp_path / "d")
    for split in ("train", "test"):
        os.rename(root / split / "b", os.fsencode(root / split) + b"/caf\xe9")
    one_line_refusal(lambda: open_data("folder", root, OPTIONS), "'caf\\xe9'", "not valid UTF-8", "rename it")
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data-dir", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "'caf\\xe9'" in err[-1] and "Traceback" not in "".join(err)
    assert not out.exists()


@pytest.mark.parametrize("name", ["tab\there", "new\nline", "bell\x07", "del\x7f", "esc\x1b[31m", "sep\u2028x",
                                  "cr\r"])
def test_class_names_with_control_characters_are_refused_in_one_line(tmp_path, name):
    root = folder_set(tmp_path / "d", classes=("a", name))
    one_line_refusal(lambda: open_data("folder", root, OPTIONS), repr(name), "control character")
    # the same inside a .zip, whose member names may hold anything
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        for path in sorted(root.rglob("*.png")):
            zf.write(path, path.relative_to(root).as_posix())
    one_line_refusal(lambda: open_data("folder", tmp_path / "d.zip", OPTIONS), repr(name))


def test_classes_txt_that_is_not_utf8_or_names_a_control_character_is_refused(tmp_path):
    options = SegmentationOptions(progress=False)
    root = seg_pairs(tmp_path / "d")
    (root / "classes.txt").write_bytes(b"road\ncaf\xe9\n")
    one_line_refusal(lambda: open_segmentation("segfolder", root, options), "classes.txt", "not UTF-8")
    (root / "classes.txt").write_text("road\tway\nsky\n")
    one_line_refusal(lambda: open_segmentation("segfolder", root, options), "'road\\tway'", "control character")


# Names a file system takes that are awkward for CSV, JSON, YAML, TeX, shells: kept as they are everywhere.
AWKWARD = ["comma, here", 'say "hi"', "it's", "a\u2215b (slash lookalike)", "x" * 200, "é" * 120,
           " leading space", "$^$ not TeX", "😀"]


def test_awkward_class_names_pass_through_the_model_file_and_its_exports(tmp_path):
    names = sorted(AWKWARD[:4] + AWKWARD[4:])
    root = folder_set(tmp_path / "d", classes=names, per_class=1)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data-dir", str(root), "--out", str(out), "--image-size", "8",
                 "--channels", "1"]) == 0
    assert infopro.load_model(out).classes == names
    assert main(["export", str(out), "--format", "torchscript", "--out", str(tmp_path / "m.ts")]) == 0
    assert list(torch.jit.load(str(tmp_path / "m.ts")).classes) == names
    pytest.importorskip("safetensors")
    assert main(["export", str(out), "--format", "safetensors", "--out", str(tmp_path / "m.safetensors")]) == 0
    assert infopro.load_model(tmp_path / "m.safetensors").classes == names


def test_awkward_class_names_label_the_class_iou_plot(tmp_path):
    path = write_class_iou_png([0.5, None, 0.25], ["$^$", "a$\\frac{$b", "é" * 50], tmp_path / "iou.png",
                               title="run $^$")
    assert Image.open(path).size[0] > 0


# ---- class 6: image modes ---------------------------------------------------------------------------------------

RAMP16 = np.array([[0, 257, 1000, 30000], [32767, 40000, 65278, 65535]], np.uint16)
RAMP16_8 = np.array([[0, 1, 4, 117], [127, 156, 254, 255]], np.uint8)  # round(v / 257)


def saved(img: Image.Image, fmt: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)
    return path


def read_back(path: Path, channels: int) -> np.ndarray:
    """What the data path decodes of one file: (H, W, C) uint8 through FileItems and `convert`."""
    items = FileItems([str(path)], np.zeros(1, np.int64))
    return np.asarray(convert(items.image(0), channels))


@pytest.mark.parametrize("mode,fmt", [("I;16", "PNG"), ("I;16", "TIFF"), ("I;16B", "TIFF"), ("I;16L", "TIFF"),
                                      ("I;16B", "PNG")])
def test_sixteen_bit_greyscale_is_scaled_to_eight_bits(tmp_path, mode, fmt):
    img = Image.frombytes(mode, (4, 2), RAMP16.astype(">u2" if mode.endswith("B") else "<u2").tobytes())
    path = saved(img, fmt, tmp_path / f"x.{fmt.lower()}")
    assert Image.open(path).mode.startswith("I;16")
    items = FileItems([str(path)], np.zeros(1, np.int64))
    assert items.header(0) == (4, 2, 1)  # greyscale: one channel
    np.testing.assert_array_equal(read_back(path, 1), RAMP16_8)
    np.testing.assert_array_equal(read_back(path, 3), np.repeat(RAMP16_8[..., None], 3, 2))


def test_native_order_sixteen_bit_in_memory_is_scaled_too():
    img = Image.frombytes("I;16N", (4, 2), RAMP16.astype("=u2").tobytes())
    np.testing.assert_array_equal(np.asarray(convert(img, 1)), RAMP16_8)
    assert mode_channels("I;16N") == 1


def test_thirty_two_bit_and_float_images_are_scaled_by_their_range(tmp_path):
    # I holding 16-bit data (what Pillow makes of a 16-bit PGM): / 257
    path = saved(Image.fromarray(RAMP16.astype(np.int32), "I"), "TIFF", tmp_path / "i16.tif")
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(read_back(path, 1), RAMP16_8)
    # I beyond 0..65535: the image's min..max
    wide = np.array([[-100000, 0, 100000, 300000]], np.int32)
    path = saved(Image.fromarray(wide, "I"), "TIFF", tmp_path / "wide.tif")
    np.testing.assert_array_equal(read_back(path, 1), [[0, 64, 128, 255]])
    # F in [0, 1]: * 255; F beyond: min..max; NaN -> 0
    unit = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)
    path = saved(Image.fromarray(unit, "F"), "TIFF", tmp_path / "unit.tif")
    assert Image.open(path).mode == "F"
    np.testing.assert_array_equal(read_back(path, 1), [[0, 64, 128, 255]])
    path = saved(Image.fromarray(np.array([[10.0, 20.0, 30.0, np.nan]], np.float32), "F"), "TIFF",
                 tmp_path / "far.tif")
    np.testing.assert_array_equal(read_back(path, 1), [[0, 128, 255, 0]])
    np.testing.assert_array_equal(to_8bit(np.full((2, 2), 7.0, np.float32)), np.zeros((2, 2)))  # constant


def palette_image(transparent: bool) -> Image.Image:
    img = Image.frombytes("P", (3, 1), bytes([0, 1, 2]))
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    if transparent:
        img.info["transparency"] = 1
    return img


# (how to make it, format, channels from the header, decoded as L, decoded as RGB); alpha is dropped (the colour
# under it kept), palettes are colour.
EIGHT_BIT = {
    "1": (lambda: Image.frombytes("1", (3, 1), bytes([0b01000000])), "PNG", 1, [0, 255, 0],
          [[0] * 3, [255] * 3, [0] * 3]),
    "L": (lambda: Image.frombytes("L", (3, 1), bytes([0, 100, 255])), "PNG", 1, [0, 100, 255],
          [[0] * 3, [100] * 3, [255] * 3]),
    "LA": (lambda: Image.frombytes("LA", (3, 1), bytes([0, 255, 100, 0, 255, 9])), "PNG", 1, [0, 100, 255],
           [[0] * 3, [100] * 3, [255] * 3]),
    "P": (lambda: palette_image(False), "PNG", 3, [0, 76, 29], [[0, 0, 0], [255, 0, 0], [0, 0, 255]]),
    "P+transparency": (lambda: palette_image(True), "PNG", 3, [0, 76, 29], [[0, 0, 0], [255, 0, 0], [0, 0, 255]]),
    "PA": (lambda: palette_image(False).convert("PA"), "TIFF", 3, [0, 76, 29],
           [[0, 0, 0], [255, 0, 0], [0, 0, 255]]),
    "RGB": (lambda: Image.frombytes("RGB", (3, 1), bytes([255, 0, 0, 0, 255, 0, 9, 9, 9])), "PNG", 3,
            [76, 150, 9], [[255, 0, 0], [0, 255, 0], [9, 9, 9]]),
    "RGBA": (lambda: Image.frombytes("RGBA", (3, 1), bytes([255, 0, 0, 0, 0, 255, 0, 128, 9, 9, 9, 255])),
             "PNG", 3, [76, 150, 9], [[255, 0, 0], [0, 255, 0], [9, 9, 9]]),
    "CMYK": (lambda: Image.frombytes("CMYK", (3, 1), bytes([0, 0, 0, 0, 0, 255, 255, 0, 0, 0, 0, 255])), "TIFF", 3,
             [255, 76, 0], [[255, 255, 255], [255, 0, 0], [0, 0, 0]]),
    "YCbCr": (lambda: Image.frombytes("YCbCr", (3, 1), bytes([255, 128, 128, 0, 128, 128, 100, 128, 128])),
              "TIFF", 3, [255, 0, 100], [[255, 255, 255], [0, 0, 0], [100, 100, 100]]),
    "LAB": (lambda: Image.frombytes("LAB", (3, 1), bytes([255, 0, 0, 0, 0, 0, 128, 0, 0])), "TIFF", 3,
            [255, 0, 119], [[254, 255, 254], [1, 0, 1], [119, 119, 119]]),
}


@pytest.mark.parametrize("mode", sorted(EIGHT_BIT))
def test_eight_bit_modes_by_what_the_mode_is(tmp_path, mode):
    make, fmt, channels, grey, colour = EIGHT_BIT[mode]
    path = saved(make(), fmt, tmp_path / f"x.{fmt.lower()}")
    assert Image.open(path).mode == mode.split("+")[0]
    assert FileItems([str(path)], np.zeros(1, np.int64)).header(0)[2] == channels
    np.testing.assert_allclose(read_back(path, 1)[0], grey, atol=1)
    np.testing.assert_allclose(read_back(path, 3)[0], colour, atol=1)


def test_modes_pillow_only_makes_in_memory():
    hsv = Image.frombytes("HSV", (3, 1), bytes([0, 0, 255, 0, 255, 255, 85, 255, 255]))
    np.testing.assert_array_equal(np.asarray(convert(hsv, 3))[0], [[255, 255, 255], [255, 0, 0], [0, 255, 0]])
    rgbx = Image.frombytes("RGBX", (1, 1), bytes([1, 2, 3, 4]))
    np.testing.assert_array_equal(np.asarray(convert(rgbx, 3))[0], [[1, 2, 3]])
    assert [mode_channels(m) for m in ("HSV", "RGBX", "I", "F", "La", "RGBa")] == [3, 3, 1, 1, 1, 3]


def test_a_sixteen_bit_folder_trains_as_one_channel_on_both_data_paths(tmp_path):
    """Constant 16-bit images (one per value, so the stream path's resize keeps the value): both paths decode
    round(v / 257), and the channel count comes out 1 from the headers."""
    values = {"a": [0, 1000], "b": [40000, 65535]}
    for split in ("train", "test"):
        for c, vs in values.items():
            for v in vs:
                img = Image.frombytes("I;16B", (4, 4), np.full((4, 4), v, ">u2").tobytes())
                saved(img, "TIFF", tmp_path / "d" / split / c / f"{v}.tif")
    expected = np.array([0, 4, 156, 255], np.uint8)  # sorted file order: a/0, a/1000, b/40000, b/65535
    memory = open_data("folder", tmp_path / "d", OPTIONS)
    assert memory.channels == 1 and memory.size == (4, 4)
    np.testing.assert_array_equal(memory.train.images[:, 0, 0, 0], expected)
    assert (memory.train.images == memory.train.images[:, :1, :1]).all()
    stream = open_data("folder", tmp_path / "d", DataOptions(path="stream", progress=False))
    assert stream.channels == 1
    dataset = StreamDataset(stream.train, stream.size, stream.channels, train=False, seed=0)
    np.testing.assert_array_equal([int(dataset[(i, 0, 0)][0][0, 0, 0]) for i in range(4)], expected)
    np.testing.assert_array_equal(decode_for_eval(stream.train, stream.size, 1, "stream")[:, 2, 2, 0], expected)


def test_sixteen_bit_masks_keep_their_indices(tmp_path):
    index = np.array([[0, 1, 300], [65535, 7, 2]], np.uint16)
    for mode, fmt in (("I;16", "PNG"), ("I;16B", "TIFF"), ("I;16", "TIFF")):
        img = Image.frombytes(mode, (3, 2), index.astype(">u2" if mode.endswith("B") else "<u2").tobytes())
        path = saved(img, fmt, tmp_path / f"{mode}.{fmt.lower()}")
        mask = read_mask(str(path))
        assert mask.dtype == np.int32
        np.testing.assert_array_equal(mask, index)
    path = saved(Image.fromarray(index.astype(np.int32), "I"), "TIFF", tmp_path / "i.tif")
    np.testing.assert_array_equal(read_mask(str(path)), index)

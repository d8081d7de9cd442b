"""Each data set reader on tiny files written here in its exact on-disk format, the image-folder rules,
what the data decides (channels, size, normalisation), and the validation split."""

import gzip
import struct
import sys

import numpy as np
import pytest
from PIL import Image

from infopro import InfoProError
from infopro.data import DataOptions, load_dataset, open_data

CLASSES10 = [f"c{i}" for i in range(10)]


def write_images(root, split, class_images):
    """class name -> list of PIL images, saved as PNG under root/split/class/."""
    for c, images in class_images.items():
        (root / split / c).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            img.save(root / split / c / f"{i:03d}.png")


def gray(value, size=(6, 5)):
    return Image.new("L", size, value)


# ---- svhn -------------------------------------------------------------------------------------


def test_svhn_mat(tmp_path):
    scipy_io = pytest.importorskip("scipy.io", reason="SVHN's .mat reader is the optional [svhn] extra (scipy)")
    rng = np.random.default_rng(0)
    x = {s: rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8) for s, n in (("train", 5), ("test", 3))}
    y = {"train": np.array([[10], [1], [2], [10], [9]]), "test": np.array([[3], [10], [4]])}
    for s in x:
        scipy_io.savemat(tmp_path / f"{s}_32x32.mat", {"X": x[s], "y": y[s]})
    ds = load_dataset("svhn", tmp_path)
    assert ds.classes == [str(d) for d in range(10)]
    assert ds.train_labels.tolist() == [0, 1, 2, 0, 9] and ds.test_labels.tolist() == [3, 0, 4]
    assert ds.train_images.shape == (5, 32, 32, 3)
    assert np.array_equal(ds.train_images[3], x["train"][:, :, :, 3])


def test_svhn_without_scipy_says_which_extra(tmp_path, monkeypatch):
    for s in ("train", "test"):
        (tmp_path / f"{s}_32x32.mat").write_bytes(b"MATLAB 5.0")
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # makes `from scipy.io import loadmat` fail
    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(InfoProError, match=r"needs scipy.*infopro\[svhn\]"):
        load_dataset("svhn", tmp_path)


# ---- stl10 ------------------------------------------------------------------------------------


def test_stl10_binary_is_column_major(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    images = {"train": rng.integers(0, 256, (3, 96, 96, 3), dtype=np.uint8),
              "test": rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)}
    labels = {"train": [1, 10, 5], "test": [2, 3]}
    for s in images:
        # Per image and channel, the 96x96 plane column by column: (N, C, W, H) in C order.
        images[s].transpose(0, 3, 2, 1).tofile(folder / f"{s}_X.bin")
        np.array(labels[s], dtype=np.uint8).tofile(folder / f"{s}_y.bin")
    ds = load_dataset("stl10", tmp_path)
    assert ds.train_labels.tolist() == [0, 9, 4] and ds.test_labels.tolist() == [1, 2]
    assert np.array_equal(ds.train_images, images["train"]) and np.array_equal(ds.test_images, images["test"])
    assert ds.classes[0] == "airplane" and ds.image_shape == (3, 96, 96)
    (folder / "test_X.bin").write_bytes(b"\0" * 100)
    with pytest.raises(InfoProError, match="test_X.bin holds 100 bytes"):
        load_dataset("stl10", tmp_path)


# ---- mnist / fashion-mnist --------------------------------------------------------------------


def write_idx(path, array, compress):
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("name,folder,compress", [("mnist", "MNIST", True), ("fashion-mnist", "FashionMNIST", False)])
def test_idx_files(tmp_path, name, folder, compress):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    train, test = rng.integers(0, 256, (4, 28, 28)), rng.integers(0, 256, (2, 28, 28))
    write_idx(raw / "train-images-idx3-ubyte", train, compress)
    write_idx(raw / "train-labels-idx1-ubyte", np.array([0, 9, 3, 3]), compress)
    write_idx(raw / "t10k-images-idx3-ubyte", test, compress)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.array([7, 1]), compress)
    ds = load_dataset(name, tmp_path)
    assert ds.image_shape == (1, 28, 28) and ds.train_labels.tolist() == [0, 9, 3, 3]
    assert np.array_equal(ds.test_images[:, :, :, 0], test)
    # Normalisation measured on the training split (not CIFAR's constants).
    assert ds.mean == pytest.approx((train.mean() / 255,)) and ds.std == pytest.approx((train.std() / 255,))
    # --channels 3 repeats the grey plane.
    rgb = load_dataset(name, tmp_path, channels=3)
    assert rgb.image_shape == (3, 28, 28) and np.array_equal(rgb.train_images[..., 2], train)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.array([7, 1, 2]), compress)
    with pytest.raises(InfoProError, match="2 images but .* 3 labels"):
        load_dataset(name, tmp_path)


# ---- image folders ----------------------------------------------------------------------------


def test_folder_any_class_count_skips_non_images(tmp_path):
    classes = [f"k{i}" for i in range(7)]
    write_images(tmp_path, "train", {c: [gray(10 * k), gray(10 * k + 1)] for k, c in enumerate(classes)})
    write_images(tmp_path, "test", {c: [gray(10 * k)] for k, c in enumerate(classes)})
    (tmp_path / "train/k3/notes.txt").write_text("not an image")
    (tmp_path / "train/k3/.DS_Store").write_bytes(b"\0\1")
    (tmp_path / "train/README.md").write_text("a file beside the class folders")
    ds = load_dataset("folder", tmp_path)
    assert ds.classes == classes and ds.num_classes == 7 and len(ds.train_labels) == 14
    assert ds.image_shape == (1, 5, 6)
    assert ds.train_images[:, 0, 0, 0].tolist() == [10 * k + j for k in range(7) for j in range(2)]


def test_folder_errors_name_the_problem(tmp_path):
    write_images(tmp_path, "train", {"a": [gray(1)], "b": [gray(2)]})
    write_images(tmp_path, "test", {"a": [gray(1)], "b": [gray(2)]})
    (tmp_path / "train/c").mkdir()
    (tmp_path / "train/c/notes.txt").write_text("x")
    with pytest.raises(InfoProError, match=r"train/c holds no image files"):
        load_dataset("folder", tmp_path)
    (tmp_path / "test/c").mkdir()
    write_images(tmp_path, "train", {"c": [gray(3)]})
    write_images(tmp_path, "test", {"c": [gray(3)]})
    (tmp_path / "test/d").mkdir()
    write_images(tmp_path, "test", {"d": [gray(4)]})
    with pytest.raises(InfoProError, match=r"test/ must have the same class folders.*only in test: \['d'\]"):
        load_dataset("folder", tmp_path)
    for f in (tmp_path / "test/d").iterdir():
        f.unlink()
    (tmp_path / "test/d").rmdir()
    (tmp_path / "train/b/001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(InfoProError, match=r"cannot read image .*train/b/001.png"):
        load_dataset("folder", tmp_path)


def test_cifar10_name_on_another_folder_points_to_folder(tmp_path):
    write_images(tmp_path, "train", {c: [Image.new("RGB", (64, 64))] for c in CLASSES10})
    write_images(tmp_path, "test", {c: [Image.new("RGB", (64, 64))] for c in CLASSES10})
    with pytest.raises(InfoProError, match="64x64, cifar10's are 32x32; pass --dataset folder"):
        load_dataset("cifar10", tmp_path)
    assert load_dataset("folder", tmp_path).image_shape == (3, 64, 64)


def test_mixed_modes_follow_the_majority_and_mixed_sizes_need_image_size(tmp_path):
    write_images(tmp_path, "train", {"a": [gray(50, (8, 8)), gray(60, (8, 8))],
                                     "b": [Image.new("RGB", (8, 8), (200, 0, 0)), gray(70, (8, 8))]})
    write_images(tmp_path, "test", {"a": [gray(1, (8, 8))], "b": [Image.new("RGBA", (8, 8))]})
    ds = load_dataset("folder", tmp_path)
    assert ds.image_shape == (1, 8, 8)  # 3 of 4 training images are grey
    assert ds.train_images[2, 0, 0, 0] == Image.new("RGB", (1, 1), (200, 0, 0)).convert("L").getpixel((0, 0))
    assert load_dataset("folder", tmp_path, channels=3).image_shape == (3, 8, 8)
    Image.new("RGB", (20, 12)).save(tmp_path / "train/b/002.png")
    with pytest.raises(InfoProError, match=r"differ in size.*002.png is 20x12.*--image-size"):
        load_dataset("folder", tmp_path)
    resized = load_dataset("folder", tmp_path, image_size=6)
    assert resized.image_shape == (1, 6, 6) and resized.train_images.shape == (5, 6, 6, 1)


def test_val_folder_beside_test_is_validation_and_alone_is_test(tmp_path):
    write_images(tmp_path, "train", {"a": [gray(1)] * 2, "b": [gray(2)] * 2})
    write_images(tmp_path, "val", {"a": [gray(1)], "b": [gray(2)]})
    data = open_data("folder", tmp_path, DataOptions(path="memory", progress=False))
    assert data.val is None and len(data.test) == 2 and data.splits["test"].startswith("val/")
    write_images(tmp_path, "test", {"a": [gray(1)] * 3, "b": [gray(2)] * 3})
    data = open_data("folder", tmp_path, DataOptions(path="memory", progress=False))
    assert len(data.val) == 2 and len(data.test) == 6
    assert data.splits["val"].startswith("val/") and data.splits["test"].startswith("test/")
    with pytest.raises(InfoProError, match="own val/ split.*drop --val-split"):
        open_data("folder", tmp_path, DataOptions(val_split=0.5, progress=False))


def test_val_split_is_stratified_seeded_and_disjoint(tmp_path):
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    write_images(tmp_path, "train", {f"c{k}": [gray(int(i % 256)) for i in np.flatnonzero(labels == k)]
                                     for k in range(4)})
    write_images(tmp_path, "test", {f"c{k}": [gray(0)] for k in range(4)})
    options = DataOptions(val_split=0.2, seed=3, path="memory", progress=False)
    data = open_data("folder", tmp_path, options)
    assert len(data.val) == 20 and len(data.train) == 80
    assert np.bincount(data.val.labels).tolist() == [2, 4, 6, 8]
    again = open_data("folder", tmp_path, options)
    assert np.array_equal(again.val.images, data.val.images)
    other = open_data("folder", tmp_path, DataOptions(val_split=0.2, seed=4, path="memory", progress=False))
    assert not np.array_equal(other.val.images[:, 0, 0, 0], data.val.images[:, 0, 0, 0])
    # Disjoint: every training pixel value (the image index mod 256) is in exactly one of the two.
    values = sorted(data.val.images[:, 0, 0, 0].tolist() + data.train.images[:, 0, 0, 0].tolist())
    assert values == sorted(int(i % 256) for i in range(100))
    assert "stratified, seed 3" in data.splits["val"]
    with pytest.raises(InfoProError, match="hold-out of 0.01 .1 of 100 samples, 4 classes"):
        open_data("folder", tmp_path, DataOptions(val_split=0.01, progress=False))


def test_decoded_folder_mean_std_are_measured_and_cached(tmp_path):
    write_images(tmp_path, "train", {"a": [gray(0)], "b": [gray(255)]})
    write_images(tmp_path, "test", {"a": [gray(0)], "b": [gray(0)]})
    ds = load_dataset("folder", tmp_path)
    assert ds.mean == pytest.approx((0.5,)) and ds.std == pytest.approx((0.5,))  # train only, not test
    data = open_data("folder", tmp_path, DataOptions(path="stream", progress=False))
    assert data.path == "stream" and data.mean == pytest.approx((0.5,)) and data.std == pytest.approx((0.5,))

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import infopro.data.prepare as prepare
from infopro import InfoProError
from infopro.data import (
    DATASETS,
    DeviceLoader,
    augment_batch,
    load_dataset,
    stratified_subset,
)


def read_image_folder(path, **kwargs):
    return load_dataset("folder", path, **kwargs)


def decoded_caches(cache):
    """The decoded-array caches of image folders (not the header scans)."""
    return list(cache.glob("image-folder-[0-9a-f]*.npz"))

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---- helpers: tiny data sets in the real on-disk formats -------------------------------------


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_rows(rng, n):
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _rows_to_nhwc(rows):
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def write_cifar10(root, per_batch=4, seed=0):
    """A cifar-10-batches-py folder with bytes keys, as the python-2 originals."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_rows, train_labels = [], []
    for i in range(1, 6):
        rows, labels = _cifar_rows(rng, per_batch), rng.integers(0, 10, per_batch).tolist()
        _dump(folder / f"data_batch_{i}", {b"batch_label": b"x", b"data": rows, b"labels": labels})
        train_rows.append(rows)
        train_labels += labels
    test_rows, test_labels = _cifar_rows(rng, 3), [9, 0, 5]
    _dump(folder / "test_batch", {b"data": test_rows, b"labels": test_labels})
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072})
    return np.concatenate(train_rows), np.array(train_labels), test_rows, np.array(test_labels)


def write_cifar100(root, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train_rows, test_rows = _cifar_rows(rng, 6), _cifar_rows(rng, 2)
    train_labels, test_labels = [0, 99, 5, 42, 7, 99], [3, 98]
    _dump(folder / "train", {b"data": train_rows, b"fine_labels": train_labels, b"coarse_labels": [0] * 6})
    _dump(folder / "test", {b"data": test_rows, b"fine_labels": test_labels, b"coarse_labels": [0] * 2})
    names = [f"class{i:03d}".encode() for i in range(100)]
    _dump(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": [b"c"] * 20})
    return train_rows, np.array(train_labels), test_rows, np.array(test_labels)


def write_folder(root, classes, per_class, size=(20, 24), mode="L", seed=0, ext="png"):
    """An image-folder tree of lossless PNGs; returns {split: (images NHWC, labels)} in reading order."""
    rng = np.random.default_rng(seed)
    channels = 1 if mode == "L" else 3
    out = {}
    for split, n in per_class.items():
        images, labels = [], []
        for k, c in enumerate(sorted(classes)):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
                Image.fromarray(a[:, :, 0] if mode == "L" else a, mode).save(root / split / c / f"{i:03d}.{ext}")
                images.append(a)
                labels.append(k)
        out[split] = (np.stack(images), np.array(labels))
    return out


# ---- readers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["parent", "folder"])
def test_cifar10_pickles_round_trip(tmp_path, given):
    train_rows, train_labels, test_rows, test_labels = write_cifar10(tmp_path)
    data_dir = tmp_path if given == "parent" else tmp_path / "cifar-10-batches-py"
    ds = load_dataset("cifar10", data_dir, cache_dir=tmp_path / "cache")
    assert ds.classes == CIFAR10_NAMES and ds.num_classes == 10
    assert ds.train_images.shape == (20, 32, 32, 3) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (3, 32, 32, 3) and ds.image_shape == (3, 32, 32)
    assert np.array_equal(ds.train_images, _rows_to_nhwc(train_rows))
    assert np.array_equal(ds.test_images, _rows_to_nhwc(test_rows))
    assert ds.train_labels.dtype == np.int64 and np.array_equal(ds.train_labels, train_labels)
    assert np.array_equal(ds.test_labels, test_labels)
    # Channel-major rows: the first 1024 bytes are the red plane.
    assert ds.train_images[0, 0, 1, 0] == train_rows[0, 1] and ds.train_images[0, 0, 0, 2] == train_rows[0, 2048]
    assert ds.mean == pytest.approx((125.3 / 255, 123.0 / 255, 113.9 / 255))
    assert ds.std == pytest.approx((63.0 / 255, 62.1 / 255, 66.7 / 255))


def test_cifar100_pickles_round_trip(tmp_path):
    train_rows, train_labels, test_rows, test_labels = write_cifar100(tmp_path)
    ds = load_dataset("cifar100", tmp_path)
    assert ds.num_classes == 100 and ds.classes[99] == "class099"
    assert np.array_equal(ds.train_images, _rows_to_nhwc(train_rows))
    assert np.array_equal(ds.test_images, _rows_to_nhwc(test_rows))
    assert np.array_equal(ds.train_labels, train_labels) and np.array_equal(ds.test_labels, test_labels)


def test_wrong_dataset_for_the_pickles_is_named(tmp_path):
    write_cifar100(tmp_path)
    with pytest.raises(InfoProError, match="CIFAR-100"):
        load_dataset("cifar10", tmp_path)


def test_pickle_with_foreign_globals_is_refused(tmp_path):
    write_cifar10(tmp_path)
    _dump(tmp_path / "cifar-10-batches-py" / "test_batch", {b"data": os.getcwd, b"labels": []})
    with pytest.raises(InfoProError, match="test_batch"):
        load_dataset("cifar10", tmp_path)


def test_image_folder_reads_back_exactly(tmp_path):
    classes = [f"c{i}" for i in range(10)]
    written = write_folder(tmp_path / "d", classes, {"train": 2, "test": 1}, size=(20, 24), mode="L")
    ds = read_image_folder(tmp_path / "d")
    assert ds.classes == classes
    assert ds.train_images.shape == (20, 24, 20, 1) and ds.test_images.shape == (10, 24, 20, 1)
    assert np.array_equal(ds.train_images, written["train"][0])
    assert np.array_equal(ds.test_images, written["test"][0])
    assert np.array_equal(ds.train_labels, written["train"][1])


def test_image_folder_rgb_palette_and_zip(tmp_path):
    written = write_folder(tmp_path / "d", ["b", "a"], {"train": 2, "test": 1}, size=(5, 7), mode="RGB")
    # A palette image counts as RGB.
    Image.fromarray(written["train"][0][0]).convert("P").save(tmp_path / "d/train/a/000.png")
    splits = read_image_folder(tmp_path / "d")
    assert splits.classes == ["a", "b"] and splits.train_images.shape == (4, 7, 5, 3)
    assert np.array_equal(splits.test_images, written["test"][0])
    # The same tree, zipped inside a wrapping folder, reads the same.
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        for p in sorted((tmp_path / "d").rglob("*.png")):
            zf.write(p, "wrap/" + p.relative_to(tmp_path / "d").as_posix())
    zipped = read_image_folder(tmp_path / "d.zip")
    assert np.array_equal(zipped.train_images, splits.train_images)
    assert np.array_equal(zipped.test_labels, splits.test_labels)


def test_unreadable_and_wrong_size_images_are_named(tmp_path):
    write_folder(tmp_path / "d", ["a", "b"], {"train": 2, "test": 1}, size=(8, 8))
    bad = tmp_path / "d/train/b/zz.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(InfoProError, match="zz.jpg"):
        read_image_folder(tmp_path / "d")
    bad.unlink()
    Image.new("L", (9, 8)).save(tmp_path / "d/test/b/odd.png")
    with pytest.raises(InfoProError, match="odd.png is 9x8.*--image-size"):
        read_image_folder(tmp_path / "d")


def test_test_classes_must_match_train(tmp_path):
    write_folder(tmp_path / "d", ["a", "b"], {"train": 1, "test": 1}, size=(8, 8))
    (tmp_path / "d/test/b/000.png").rename(tmp_path / "d/test/a/001.png")
    (tmp_path / "d/test/b").rmdir()
    with pytest.raises(InfoProError, match="same class folders"):
        read_image_folder(tmp_path / "d")


def test_bad_data_dirs(tmp_path):
    with pytest.raises(InfoProError, match="does not exist"):
        load_dataset("cifar10", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InfoProError, match="is empty"):
        load_dataset("cifar10", tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other/readme.txt").write_text("hi")
    with pytest.raises(InfoProError, match="image folder"):
        load_dataset("cifar10", tmp_path / "other")
    with pytest.raises(InfoProError, match="--data-dir"):
        load_dataset("cifar100")
    with pytest.raises(InfoProError, match="unknown dataset 'imagenet'; choose one of: cifar10, cifar100"):
        load_dataset("imagenet")


def test_channel_count_must_fit_the_dataset(tmp_path):
    write_folder(tmp_path / "d", [f"c{i}" for i in range(10)], {"train": 1, "test": 1}, size=(32, 32), mode="L")
    with pytest.raises(InfoProError, match="1-channel images but cifar10 expects 3"):
        load_dataset("cifar10", tmp_path / "d", cache_dir=tmp_path / "cache")


def test_class_count_must_fit_the_dataset(tmp_path):
    write_folder(tmp_path / "d", ["a", "b", "c"], {"train": 1, "test": 1}, size=(8, 8), mode="RGB")
    with pytest.raises(InfoProError, match="3 classes but cifar10 has 10"):
        load_dataset("cifar10", tmp_path / "d", cache_dir=tmp_path / "cache")


# ---- cache ------------------------------------------------------------------------------------


def test_cache_is_used_and_invalidated(tmp_path, monkeypatch):
    classes = [f"c{i}" for i in range(10)]
    write_folder(tmp_path / "d", classes, {"train": 1, "test": 1}, size=(6, 6), mode="RGB")
    cache = tmp_path / "cache"
    first = read_image_folder(tmp_path / "d", cache_dir=cache)
    assert len(decoded_caches(cache)) == 1 and not list(cache.glob("*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(prepare, "prepare_array", no_decoding)
    second = read_image_folder(tmp_path / "d", cache_dir=cache)
    assert np.array_equal(first.train_images, second.train_images) and first.classes == second.classes

    # A changed file re-decodes (and the stale cache of that source is replaced).
    monkeypatch.undo()
    Image.new("RGB", (6, 6), color=(7, 7, 7)).save(tmp_path / "d/train/c3/000.png")
    third = read_image_folder(tmp_path / "d", cache_dir=cache)
    assert (third.train_images[3] == 7).all()
    assert len(decoded_caches(cache)) == 1


def test_cache_dir_defaults_to_env(tmp_path, monkeypatch):
    write_folder(tmp_path / "d", [f"c{i}" for i in range(10)], {"train": 1, "test": 1}, size=(6, 6), mode="RGB")
    monkeypatch.setenv("INFOPRO_CACHE", str(tmp_path / "envcache"))
    read_image_folder(tmp_path / "d")
    assert len(decoded_caches(tmp_path / "envcache")) == 1


def test_corrupt_cache_is_rebuilt(tmp_path):
    write_folder(tmp_path / "d", [f"c{i}" for i in range(10)], {"train": 1, "test": 1}, size=(6, 6), mode="RGB")
    first = read_image_folder(tmp_path / "d", cache_dir=tmp_path / "cache")
    for cache_file in (tmp_path / "cache").glob("*.npz"):
        cache_file.write_bytes(b"garbage")
    again = read_image_folder(tmp_path / "d", cache_dir=tmp_path / "cache")
    assert np.array_equal(first.train_images, again.train_images)


# ---- bundled default --------------------------------------------------------------------------


def test_bundled_default_loads(tmp_path):
    ds = load_dataset("cifar10", cache_dir=tmp_path)
    assert ds.train_images.shape == (2000, 32, 32, 3) and ds.test_images.shape == (500, 32, 32, 3)
    assert ds.classes == CIFAR10_NAMES and ds.image_shape == (3, 32, 32)
    assert np.bincount(ds.train_labels).tolist() == [200] * 10
    assert np.bincount(ds.test_labels).tolist() == [50] * 10
    assert ds.source.endswith("cifar10-subset.zip")


def test_registry():
    assert DATASETS.names() == ["cifar10", "cifar100", "cityscapes", "fashion-mnist", "folder", "mnist", "segfolder",
                                "stl10", "svhn"]
    assert DATASETS.get("cifar100").num_classes == 100


# ---- stratified subsets -----------------------------------------------------------------------


def test_stratified_subset():
    labels = np.repeat(np.arange(4), 25)
    np.random.default_rng(0).shuffle(labels)
    idx = stratified_subset(labels, 10, seed=3)
    assert len(idx) == 10 and len(set(idx.tolist())) == 10 and np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx], minlength=4)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 10
    assert np.array_equal(idx, stratified_subset(labels, 10, seed=3))
    assert not np.array_equal(idx, stratified_subset(labels, 10, seed=4))
    assert np.bincount(labels[stratified_subset(labels, 40, seed=0)]).tolist() == [10] * 4
    assert len(stratified_subset(labels, 100, seed=0)) == 100


def test_stratified_subset_small_class_and_bounds():
    labels = np.array([0] * 2 + [1] * 50 + [2] * 50)
    counts = np.bincount(labels[stratified_subset(labels, 30, seed=0)])
    assert counts.tolist() == [2, 14, 14]
    with pytest.raises(InfoProError):
        stratified_subset(labels, 2, seed=0)
    with pytest.raises(InfoProError):
        stratified_subset(labels, 103, seed=0)


# ---- augmentation -----------------------------------------------------------------------------


def _images(n=6, c=3, h=8, w=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def test_augment_identity_and_flip():
    x = _images()
    y = augment_batch(x, torch.Generator().manual_seed(0), pad=0, flip=False)
    assert y.dtype == torch.uint8 and torch.equal(x, y)
    # pad=0: every image is either itself or its mirror, and a fixed seed flips some of both.
    out = augment_batch(_images(64), torch.Generator().manual_seed(0), pad=0, flip=True)
    ref = _images(64)
    same = (out == ref).flatten(1).all(1)
    mirrored = (out == ref.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and mirrored.any() and same.any()


def test_crop_flip_matches_reflect_padding():
    from infopro.data import crop_flip

    x = _images(3)
    offsets = torch.tensor([[0, 8], [4, 4], [8, 1]])
    flips = torch.tensor([False, True, True])
    out = crop_flip(x, offsets, flips, pad=4)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)), mode="reflect")
    for i, ((top, left), f) in enumerate(zip(offsets.tolist(), flips.tolist())):
        want = padded[i, :, top : top + 8, left : left + 10]
        assert np.array_equal(out[i].numpy(), want[:, :, ::-1] if f else want)


def test_augment_batch_is_seeded_and_crops_windows():
    x = _images(16)
    a = augment_batch(x, torch.Generator().manual_seed(5))
    b = augment_batch(x, torch.Generator().manual_seed(5))
    assert a.shape == x.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, augment_batch(x, torch.Generator().manual_seed(6)))
    # Every output is some window (or mirrored window) of the reflect-padded image.
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)), mode="reflect")
    for i in range(4):
        windows = [
            padded[i, :, t : t + 8, l : l + 10][:, :, ::s]
            for t in range(9) for l in range(9) for s in (1, -1)
        ]
        assert any(np.array_equal(a[i].numpy(), w) for w in windows)


# ---- device loader ----------------------------------------------------------------------------


def _loader(n=10, train=True, batch_size=4, **kw):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(n)  # label == index, so batches reveal their indices
    return DeviceLoader(images, labels, "cpu", batch_size, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), train, **kw), images


def test_train_batches_cover_every_index_once():
    loader, _ = _loader(train=True)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    x, y = batches[0]
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_test_batches_are_in_order_and_normalised():
    loader, images = _loader(train=False)
    batches = list(loader)
    assert torch.cat([y for _, y in batches]).tolist() == list(range(10))
    x = torch.cat([x for x, _ in batches])
    want = (images.transpose(0, 3, 1, 2) / 255 - 0.5) / 0.25
    assert np.allclose(x.numpy(), want, atol=1e-6)
    assert list(loader)[0][0].equal(batches[0][0])


def test_normalisation_on_a_hand_made_image():
    image = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 255, 51, 0
    loader = DeviceLoader(image, np.array([0]), "cpu", 1, (0.5, 0.2, 0.1), (0.5, 0.1, 0.2), train=False)
    (x, _), = list(loader)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 0.0, -0.5]))


def test_epochs_are_reproducible_and_differ():
    loader, _ = _loader(n=32, batch_size=8)
    loader.set_epoch(3)
    a = list(loader)
    loader.set_epoch(3)
    b = list(loader)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    loader.set_epoch(4)
    c = list(loader)
    assert not torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in c]))
    # A fresh loader (a resumed run) at epoch 3 sees the same batches; each pass advances the epoch.
    fresh, _ = _loader(n=32, batch_size=8)
    fresh.set_epoch(3)
    d = list(fresh)
    assert all(torch.equal(xa, xd) for (xa, _), (xd, _) in zip(a, d))
    assert fresh.epoch == 4


def test_drop_last_and_bad_arguments():
    loader, _ = _loader(n=10, batch_size=4, drop_last=True)
    assert len(loader) == 2 and sum(len(y) for _, y in loader) == 8
    with pytest.raises(InfoProError):
        _loader(batch_size=0)
    with pytest.raises(InfoProError):
        DeviceLoader(np.zeros((2, 4, 4, 1), np.uint8), np.zeros(2), "cpu", 1, (0.5, 0.5), (1, 1), train=False)


@pytest.mark.parametrize("padding,mode", [("reflect", "reflect"), ("zeros", "constant")])
def test_crop_flip_equals_pad_then_crop_then_flip(padding, mode):
    """The one-gather crop equals padding the image (reflect as the CIFAR code, zeros as torchvision's
    RandomCrop(padding=...) for SVHN/STL-10), cropping at the offset, then flipping."""
    import torch.nn.functional as F

    from infopro.data import crop_flip

    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (6, 3, 9, 7), generator=g, dtype=torch.uint8)
    pad = 3
    offsets = torch.randint(0, 2 * pad + 1, (6, 2), generator=g)
    flips = torch.tensor([True, False, True, False, True, False])
    got = crop_flip(images, offsets, flips, pad, padding)
    padded = F.pad(images.float(), (pad,) * 4, mode=mode)
    for i in range(6):
        top, left = offsets[i].tolist()
        expected = padded[i, :, top:top + 9, left:left + 7]
        expected = expected.flip(-1) if flips[i] else expected
        assert torch.equal(got[i].float(), expected), i
    if padding == "zeros":
        assert (got == 0).any()  # the zero border shows up somewhere


def test_datasets_carry_the_authors_augmentation():
    from infopro.data import DATASETS

    assert (DATASETS.get("cifar10").pad, DATASETS.get("cifar10").padding, DATASETS.get("cifar10").flip) == (4, "reflect", True)
    assert (DATASETS.get("svhn").pad, DATASETS.get("svhn").padding, DATASETS.get("svhn").flip) == (2, "zeros", False)
    assert (DATASETS.get("stl10").pad, DATASETS.get("stl10").padding, DATASETS.get("stl10").flip) == (4, "zeros", True)

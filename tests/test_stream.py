"""The stream path: its transforms against hand computation, its seeded order, and the memory path's
interface (same batches in distribution)."""


import numpy as np
import pytest
import torch
from PIL import Image

from infopro import InfoProError
from infopro.data import ArrayItems, DataOptions, DeviceLoader, StreamLoader, open_data, make_loader
from infopro.data.transforms import eval_view, random_resized_crop_box


def _photo(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def test_eval_view_is_resize_short_side_then_centre_crop():
    img = _photo(50, 40)
    # S = 16: short side to floor(16 / 0.875) = 18, long side int(18 * 50 / 40) = 22; crop 16 at
    # top round((18 - 16) / 2) = 1, left round((22 - 16) / 2) = 3.
    want = img.resize((22, 18), Image.BILINEAR).crop((3, 1, 19, 17))
    assert np.array_equal(np.asarray(eval_view(img, (16, 16))), np.asarray(want))
    tall = _photo(30, 61, seed=1)
    want = tall.resize((18, int(18 * 61 / 30)), Image.BILINEAR).crop((1, 10, 17, 26))  # 36 rows: top 10
    assert np.array_equal(np.asarray(eval_view(tall, (16, 16))), np.asarray(want))


def test_random_resized_crop_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(2000):
        left, top, w, h = random_resized_crop_box(300, 200, rng)
        assert 0 <= left and left + w <= 300 and 0 <= top and top + h <= 200
        areas.append(w * h / (300 * 200))
        ratios.append(w / h)
    # Rounding to whole pixels moves the bounds by at most a pixel's worth.
    assert 0.08 - 0.01 <= min(areas) and max(areas) <= 1.0
    assert 3 / 4 - 0.02 <= min(ratios) and max(ratios) <= 4 / 3 + 0.02
    assert min(areas) < 0.15 and max(areas) > 0.8  # the whole range is used
    # An image too elongated for any try: the central crop with the ratio clamped to 4/3.
    assert random_resized_crop_box(1000, 10, rng) == ((1000 - 13) // 2, 0, 13, 10)
    assert random_resized_crop_box(10, 1000, rng) == (0, (1000 - 13) // 2, 10, 13)  # ratio 3/4: h = 10 / 0.75


def _items(n=24, size=(20, 30), classes=3):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)
    return ArrayItems(images, np.arange(n) % classes)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


def test_stream_batches_are_seeded_by_epoch_and_independent_of_workers():
    items = _items()
    kwargs = dict(size=(16, 16), channels=3, device="cpu", batch_size=5, mean=(0.5,) * 3, std=(0.25,) * 3,
                  train=True, seed=7)
    serial = StreamLoader(items, workers=0, **kwargs)
    parallel = StreamLoader(items, workers=2, **kwargs)
    first = _epoch(serial, 3)
    assert _same(first, _epoch(parallel, 3))  # what a resumed run at epoch 3 sees, with any workers
    assert not _same(first, _epoch(serial, 4))
    x, y = first[0]
    assert x.dtype == torch.float32 and x.shape == (5, 3, 16, 16) and y.dtype == torch.int64
    labels = torch.cat([y for _, y in first])
    assert sorted(labels.tolist()) == sorted(items.labels.tolist()) and len(serial) == 5


def test_stream_shards_split_each_batch():
    items = _items(n=23)
    kwargs = dict(size=(16, 16), channels=3, device="cpu", batch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3,
                  train=True, seed=1, workers=0)
    whole = _epoch(StreamLoader(items, **kwargs), 0)
    ranks = [StreamLoader(items, shard=(r, 3), **kwargs) for r in range(3)]
    parts = [_epoch(loader, 0) for loader in ranks]
    for step, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([p[step][0] for p in parts]), x)
        assert torch.equal(torch.cat([p[step][1] for p in parts]), y)
        assert ranks[0].global_batch_size(step) == len(y)


def test_both_paths_give_the_same_kind_of_batches(tmp_path):
    for split, n in (("train", 6), ("test", 2)):
        for k in range(3):
            (tmp_path / split / f"c{k}").mkdir(parents=True)
            for i in range(n):
                _photo(24, 18, seed=10 * k + i).save(tmp_path / split / f"c{k}" / f"{i}.png")
    epochs = {}
    for path in ("memory", "stream"):
        data = open_data("folder", tmp_path, DataOptions(image_size=12, path=path, progress=False))
        assert data.path == path and data.image_shape == (3, 12, 12)
        loader = make_loader(data, data.train, "cpu", 4, train=True, seed=0, workers=0)
        assert isinstance(loader, DeviceLoader if path == "memory" else StreamLoader)
        epochs[path] = _epoch(loader, 0)
        evaluation = _epoch(make_loader(data, data.test, "cpu", 4, train=False, seed=0, workers=0), 0)
        assert torch.cat([y for _, y in evaluation]).tolist() == [0, 0, 1, 1, 2, 2]  # in order, unaugmented
    for path, batches in epochs.items():
        x = torch.cat([b[0] for b in batches])
        assert x.shape == (18, 3, 12, 12) and x.dtype == torch.float32
        assert sorted(torch.cat([b[1] for b in batches]).tolist()) == [0] * 6 + [1] * 6 + [2] * 6
        assert abs(x.mean().item()) < 0.3 and 0.6 < x.std().item() < 1.4, path  # normalised by the train stats


@pytest.mark.parametrize("arch, shape", [("resnet20", (1, 28, 28)), ("resnet20", (3, 40, 24)), ("resnet18", (1, 64, 64))])
def test_decoder_reconstructs_the_image_the_network_sees(arch, shape):
    """The learner is built from the data's (C, H, W): the decoder's target is the (augmented) input
    batch itself, un-normalised with the data's own per-channel statistics, at any channel count."""
    from infopro.local import LocalLearner
    from infopro.models import build_backbone

    c = shape[0]
    mean, std = (0.3,) * c, (0.2,) * c
    learner = LocalLearner(build_backbone(arch, 7, in_channels=c), 2, "infopro-softmax", cuts="even",
                           input_shape=shape, num_classes=7, mean=mean, std=std)
    x = torch.randn(4, *shape)
    image = learner.unnormalize(x)
    assert torch.allclose(image, (x * 0.2 + 0.3).clamp(0, 1))
    decoder = learner.aux[0].decoder
    assert decoder(learner.pieces[0](x)).shape == image.shape == (4, *shape)
    assert len(learner.train_step(x, torch.tensor([0, 1, 2, 6]))["losses"]) == 2


def test_an_image_that_fails_in_a_worker_is_one_line_naming_it(tmp_path):
    for split in ("train", "test"):
        for k in range(2):
            (tmp_path / split / f"c{k}").mkdir(parents=True)
            _photo(16, 16, seed=k).save(tmp_path / split / f"c{k}" / "a.png")
    good = (tmp_path / "train/c1/a.png").read_bytes()
    (tmp_path / "train/c1/b.png").write_bytes(good)
    data = open_data("folder", tmp_path, DataOptions(path="stream", progress=False))
    (tmp_path / "train/c1/b.png").write_bytes(good[: len(good) // 2])  # damaged while the run goes on
    loader = make_loader(data, data.train, "cpu", 3, train=True, seed=0, workers=1)
    with pytest.raises(InfoProError) as error:
        list(loader)
    assert str(error.value).startswith("cannot read image ") and "train/c1/b.png" in str(error.value)
    assert len(str(error.value).splitlines()) == 1


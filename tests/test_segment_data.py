"""Semantic segmentation data: the pair layouts, the refusals, the loaders' augmentation and sliding windows."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infopro.data import (DataOptions, SegmentationOptions, SegmentationTrainLoader, detect_target,
                          make_segmentation_loader, open_data, open_segmentation)
from infopro.data.pairs import read_mask
from infopro.data.seg_augment import (choose_crop, crop_is_balanced, hsv_to_rgb, photometric_distortion,
                                      rescaled_size, rgb_to_hsv)
from infopro.errors import InfoProError
from infopro.sliding_window import sliding_window_logits

QUIET = SegmentationOptions(progress=False)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _pair(seed: int, size: tuple[int, int] = (8, 12), top: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, top + 1, size=size).astype(np.uint8)
    mask[0, 0] = top  # every mask holds the top class: the counted class count is top + 1
    return rng.integers(0, 256, size=(*size, 3)).astype(np.uint8), mask


def _write(image_dir: Path, mask_dir: Path, stems: list[str], seed: int = 0, size: tuple[int, int] = (8, 12),
           image_ext: str = ".png") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    pairs = {}
    for k, stem in enumerate(stems):
        image, mask = _pair(seed + k, size)
        _save(image_dir / f"{stem}{image_ext}", image)
        _save(mask_dir / f"{stem}.png", mask)
        pairs[stem] = (image, mask)
    return pairs


def _folders(root: Path, layout: str, split: str) -> tuple[Path, Path]:
    if layout == "split-first":
        return root / split / "images", root / split / "masks"
    if layout == "mmseg":
        return root / "img_dir" / split, root / "ann_dir" / split
    return root / "images" / split, root / layout / split  # masks/, annotations/, labels/


def _make(root: Path, layout: str = "split-first", splits: tuple[str, ...] = ("train", "val"),
          n: int = 3) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    return {split: _write(*_folders(root, layout, split), [f"{split}{k}" for k in range(n)], seed=10 * s)
            for s, split in enumerate(splits)}


# Layouts

@pytest.mark.parametrize("layout", ["split-first", "masks", "annotations", "labels", "mmseg"])
def test_each_layout_reads_its_pairs_by_stem(tmp_path: Path, layout: str) -> None:
    written = _make(tmp_path, layout, ("train", "val", "test"))
    assert detect_target(tmp_path) == "mask"
    data = open_segmentation("segfolder", tmp_path, QUIET)
    assert data.classes == ["class0", "class1", "class2"] and data.num_classes == 3
    assert (len(data.train), len(data.val), len(data.test)) == (3, 3, 3)
    assert set(data.splits) == {"train", "val", "test"}
    assert data.size == (8, 12) and data.channels == 3 and data.image_shape == (3, 8, 12)
    assert data.path == "memory" and data.ignore_index == 255 and not data.test_is_held_out
    for role in ("train", "test"):
        split = getattr(data, role)
        for k, (image, mask) in enumerate(written[role].values()):
            assert np.array_equal(split.images[k], image) and np.array_equal(split.masks[k], mask)


def test_train_and_val_only_measure_on_val(tmp_path: Path) -> None:
    written = _make(tmp_path, "split-first", ("train", "val"))
    data = open_segmentation("segfolder", tmp_path, QUIET)
    assert data.val is None and len(data.test) == 3
    assert np.array_equal(data.test.masks[0], written["val"]["val0"][1])


def test_images_and_masks_pair_by_stem_across_extensions_and_subfolders(tmp_path: Path) -> None:
    _write(tmp_path / "train/images/a", tmp_path / "train/masks/a", ["x", "y"], image_ext=".jpg")
    _write(tmp_path / "train/images/b", tmp_path / "train/masks/b", ["x"], seed=5)
    _write(tmp_path / "test/images", tmp_path / "test/masks", ["z"])
    data = open_segmentation("segfolder", tmp_path, QUIET)
    assert [Path(n).relative_to(tmp_path).as_posix() for n in data.train.names] == [
        "train/images/a/x.jpg", "train/images/a/y.jpg", "train/images/b/x.png"]


def _cityscapes(root: Path, train_ids: bool = True) -> None:
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for c, city in enumerate(cities):
            name = f"{city}_00000{c}_000019"
            image, mask = _pair(c, top=18)
            mask[1, 1] = 255
            _save(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", image)
            gt = root / "gtFine" / split / city
            _save(gt / f"{name}_gtFine_labelIds.png", mask)  # the download's other masks are not read
            _save(gt / f"{name}_gtFine_color.png", image)
            if train_ids:
                _save(gt / f"{name}_gtFine_labelTrainIds.png", mask)


@pytest.mark.parametrize("name", ["cityscapes", "segfolder"])
def test_cityscapes_names_in_city_folders(tmp_path: Path, name: str) -> None:
    _cityscapes(tmp_path)
    data = open_segmentation(name, tmp_path, QUIET)
    assert data.num_classes == 19 and data.classes[:3] == ["road", "sidewalk", "building"]
    assert data.classes[6:8] == ["traffic light", "traffic sign"] and data.classes[-1] == "bicycle"
    assert len(data.train) == 2 and data.val is None and len(data.test) == 1
    assert Path(data.train.names[1]).name == "bochum_000001_000019_leftImg8bit.png"
    assert data.train.masks[0][1, 1] == 255


def test_cityscapes_without_train_ids_says_how_to_make_them(tmp_path: Path) -> None:
    _cityscapes(tmp_path, train_ids=False)
    with pytest.raises(InfoProError, match="createTrainIdLabelImgs"):
        open_segmentation("cityscapes", tmp_path, QUIET)


def test_classes_txt_names_the_classes(tmp_path: Path) -> None:
    _make(tmp_path)
    (tmp_path / "classes.txt").write_text("sky\nroad\n\ncar\nperson\n")
    data = open_segmentation("segfolder", tmp_path, QUIET)
    assert data.classes == ["sky", "road", "car", "person"]


def test_grey_images_train_as_one_channel(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for k in range(3):
            image, mask = _pair(k)
            _save(tmp_path / split / "images" / f"{k}.png", image[:, :, 0] if k else image)  # 2 of 3 grey
            _save(tmp_path / split / "masks" / f"{k}.png", mask)
    data = open_segmentation("segfolder", tmp_path, QUIET)
    assert data.channels == 1 and data.train.images[1].shape == (8, 12, 1) and len(data.mean) == 1


def test_subsets_are_seeded_and_in_stem_order(tmp_path: Path) -> None:
    _make(tmp_path, n=6)
    options = SegmentationOptions(progress=False, train_subset=3, test_subset=2, seed=1)
    first, again = open_segmentation("segfolder", tmp_path, options), open_segmentation("segfolder", tmp_path, options)
    assert first.train.names == again.train.names and len(first.train) == 3 and len(first.test) == 2
    assert first.train.names == sorted(first.train.names)
    assert "subset of 3" in first.splits["train"]


def test_detect_target_and_the_classification_path_refusing_pairs(tmp_path: Path) -> None:
    _make(tmp_path / "seg")
    for k in range(2):
        _save(tmp_path / "cls" / "train" / f"c{k}" / "a.png", _pair(k)[0])
    assert detect_target(tmp_path / "cls") == "class"
    assert detect_target(tmp_path / "nothing") is None
    with pytest.raises(InfoProError, match="segmentation set.*--dataset segfolder"):
        open_data("folder", tmp_path / "seg", DataOptions(progress=False))
    with pytest.raises(InfoProError, match="open_segmentation"):
        open_data("segfolder", tmp_path / "seg", DataOptions(progress=False))


# Refusals

def test_a_mask_without_an_image_is_refused(tmp_path: Path) -> None:
    _make(tmp_path)
    _save(tmp_path / "train/masks/stray.png", _pair(0)[1])
    with pytest.raises(InfoProError, match=r"masks without an image .*stray.*add their images or remove"):
        open_segmentation("segfolder", tmp_path, QUIET)


def test_images_without_masks_are_listed_up_to_three_with_the_count(tmp_path: Path) -> None:
    _make(tmp_path)
    for k in range(5):
        _save(tmp_path / f"train/images/lone{k}.png", _pair(k)[0])
    listed = r"images without a mask .*\(5: lone0, lone1, lone2, \.\.\.\); add their masks"
    with pytest.raises(InfoProError, match=listed) as e:
        open_segmentation("segfolder", tmp_path, QUIET)
    assert "lone3" not in str(e.value) and "\n" not in str(e.value)


def test_a_mask_of_another_size_is_refused(tmp_path: Path) -> None:
    _make(tmp_path)
    _save(tmp_path / "train/masks/train1.png", np.zeros((4, 6), np.uint8))
    with pytest.raises(InfoProError, match=r"train1\.png is 6x4 but its image .* is 12x8.*nearest"):
        open_segmentation("segfolder", tmp_path, QUIET)


def test_a_value_beyond_the_classes_is_refused_unless_it_is_the_ignore_index(tmp_path: Path) -> None:
    _make(tmp_path)
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    mask = _pair(0)[1]
    mask[3, 3] = 255
    _save(tmp_path / "val/masks/val0.png", mask)
    assert open_segmentation("segfolder", tmp_path, QUIET).test.masks[0][3, 3] == 255
    mask[3, 3] = 7
    _save(tmp_path / "val/masks/val0.png", mask)
    with pytest.raises(InfoProError, match=r"val0\.png holds the value 7.*ignore index 255.*3 classes"):
        open_segmentation("segfolder", tmp_path, QUIET)
    data = open_segmentation("segfolder", tmp_path, SegmentationOptions(progress=False, ignore_index=7))
    assert data.ignore_index == 7 and data.test.masks[0][3, 3] == 7
    with pytest.raises(InfoProError, match="ignore index 1 is one of the 3 class"):
        open_segmentation("segfolder", tmp_path, SegmentationOptions(progress=False, ignore_index=1))


def test_without_classes_txt_a_val_value_beyond_train_asks_for_one(tmp_path: Path) -> None:
    _make(tmp_path)
    mask = _pair(0)[1]
    mask[0, 1] = 9
    _save(tmp_path / "val/masks/val1.png", mask)
    with pytest.raises(InfoProError, match=r"val1\.png holds the value 9.*add a classes\.txt"):
        open_segmentation("segfolder", tmp_path, QUIET)


def test_an_rgb_colour_mask_is_refused_but_a_grey_one_saved_as_rgb_is_read(tmp_path: Path) -> None:
    _make(tmp_path)
    mask = _pair(1)[1]
    _save(tmp_path / "train/masks/train1.png", np.repeat(mask[:, :, None], 3, axis=2))
    assert np.array_equal(open_segmentation("segfolder", tmp_path, QUIET).train.masks[1], mask)
    colour = np.zeros((8, 12, 3), np.uint8)
    colour[..., 0] = 128
    _save(tmp_path / "train/masks/train1.png", colour)
    with pytest.raises(InfoProError, match=r"train1\.png is an RGB colour image; convert it to class indices"):
        open_segmentation("segfolder", tmp_path, QUIET)


def test_palette_and_16_bit_masks_are_read_by_index(tmp_path: Path) -> None:
    index = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    palette = Image.fromarray(index, "P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)  # VOC's first colours
    palette.save(tmp_path / "voc.png")
    assert Image.open(tmp_path / "voc.png").mode == "P"
    assert np.array_equal(read_mask(str(tmp_path / "voc.png")), index)
    Image.fromarray(index.astype(np.uint16) * 300).save(tmp_path / "deep.png")
    deep = read_mask(str(tmp_path / "deep.png"))
    assert deep.dtype == np.int32 and np.array_equal(deep, index.astype(np.int32) * 300)


# Training loader

def _data(tmp_path: Path, n: int = 5, **options):
    _make(tmp_path, n=n)
    return open_segmentation("segfolder", tmp_path, SegmentationOptions(progress=False, **options))


def test_train_batches_are_crops_of_the_data_size(tmp_path: Path) -> None:
    data = _data(tmp_path, crop=(6, 10))
    loader = make_segmentation_loader(data, data.train, "cpu", batch_size=2, train=True, seed=0)
    assert len(loader) == 3 and loader.num_samples == 5 and loader.shard is None
    assert [loader.global_batch_size(s) for s in range(3)] == [2, 2, 1]
    batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(2, 3, 6, 10)] * 2 + [(1, 3, 6, 10)]
    assert all(y.dtype == torch.int64 and y.shape == x.shape[:1] + x.shape[2:] for x, y in batches)
    assert all(x.dtype == torch.float32 for x, _ in batches)
    assert set(torch.cat([y.flatten() for _, y in batches]).tolist()) <= {0, 1, 2, 255}
    dropped = make_segmentation_loader(data, data.train, "cpu", batch_size=2, train=True, drop_last=True)
    assert len(dropped) == len(list(dropped)) == 2


def _ramp_set(root: Path, axis: int) -> None:
    """Images whose red (axis 1) or green (axis 0) value is the pixel's column or row, masks holding it too."""
    for split, count in (("train", 4), ("test", 1)):
        for k in range(count):
            h, w = 30 + 4 * k, 40 + 6 * k
            rows, cols = np.mgrid[0:h, 0:w]
            image = np.stack([cols, rows, np.zeros_like(rows)], axis=2).astype(np.uint8)
            _save(root / split / "images" / f"{k}.png", image)
            _save(root / split / "masks" / f"{k}.png", (cols if axis == 1 else rows).astype(np.uint8))


@pytest.mark.parametrize("axis", [0, 1])
def test_scale_crop_and_flip_keep_image_and_mask_aligned(tmp_path: Path, axis: int) -> None:
    _ramp_set(tmp_path, axis)
    # mean 0, std 1/255: a normalised pixel is its 0..255 value
    data = open_segmentation("segfolder", tmp_path, SegmentationOptions(progress=False, crop=(24, 36), mean=(0,) * 3,
                                                                        std=(1 / 255,) * 3))
    loader = SegmentationTrainLoader(data.train.images, data.train.masks, "cpu", 4, data.mean, data.std, data.size,
                                     seed=3, cat_max_ratio=1.0, photometric=False)
    mirrored = 0
    for _ in range(4):
        for x, y in loader:
            value = x[:, 1 - axis]  # green holds the row, red the column
            labelled = y != 255
            # bilinear image vs nearest mask: at most 1.5 source pixels apart (see seg_augment.resize_mask)
            assert (value - y.float()).abs()[labelled].max() <= 1.5
            assert (x.permute(1, 0, 2, 3)[:, ~labelled] == 0).all()  # the padding: 0 after normalising
            both = labelled[:, :, 1:] & labelled[:, :, :-1]
            mirrored += int(((x[:, 0, :, 1:] < x[:, 0, :, :-1]) & both).any(dim=(1, 2)).sum())
    assert mirrored > 0  # columns running right to left: some crops were flipped


def test_photometric_distortion_changes_the_image_not_the_mask(tmp_path: Path) -> None:
    data = _data(tmp_path)
    plain = SegmentationTrainLoader(data.train.images, data.train.masks, "cpu", 5, data.mean, data.std,
                                    data.size, seed=0, photometric=False)
    coloured = SegmentationTrainLoader(data.train.images, data.train.masks, "cpu", 5, data.mean, data.std,
                                       data.size, seed=0)
    (x0, y0), (x1, y1) = next(iter(plain)), next(iter(coloured))
    # the first sample's geometry is drawn before its colours (later samples' draws come after them)
    assert torch.equal(y0[0], y1[0]) and not torch.allclose(x0[0], x1[0])


def test_rescaled_size_follows_mmsegs_keep_ratio_resize() -> None:
    assert rescaled_size(180, 240, 1.0) == (180, 240)
    assert rescaled_size(180, 240, 0.5) == (90, 120)
    assert rescaled_size(180, 240, 2.0) == (360, 480)
    # Cityscapes: 1024x2048 under img_scale (2048, 1024) x 0.75
    assert rescaled_size(1024, 2048, 0.75, (2048, 1024)) == (768, 1536)
    # an image of another aspect fits inside (long, short): 500x500 in (2048, 1024) -> 1024x1024
    assert rescaled_size(500, 500, 1.0, (2048, 1024)) == (1024, 1024)


def test_crop_balance_rule_on_hand_cases() -> None:
    rule = lambda rows: crop_is_balanced(torch.tensor(rows), 0.75, 255)  # noqa: E731
    assert not rule([[0, 0, 0, 1]])  # largest share 0.75: not below the limit
    assert rule([[0, 0, 1, 1]])
    assert not rule([[0, 0, 0, 0]])  # one class
    assert not rule([[0, 255, 255, 255]])  # one class once the ignored pixels are set aside
    assert rule([[0, 1, 255, 255]])
    assert not rule([[255, 255]])


def test_choose_crop_redraws_up_to_ten_times() -> None:
    # 4 x 8 mask, 4 x 4 crops at left 0..4: only left = 4 (columns 4-7: half 0, half 1) is balanced.
    mask = torch.zeros(4, 8, dtype=torch.uint8)
    mask[:, 6:] = 1
    with_rule = [choose_crop(mask, (4, 4), torch.Generator().manual_seed(s), 0.75)[1] for s in range(200)]
    without = [choose_crop(mask, (4, 4), torch.Generator().manual_seed(s), 1.0)[1] for s in range(200)]
    # (4/5)^10 of the draws never meet it; mmseg keeps the 11th then
    assert with_rule.count(4) > 0.8 * 200 and without.count(4) < 0.35 * 200
    # an unbalanced mask: 1 draw + 10 redraws, 2 numbers each; a balanced first crop: 1 draw
    for crop_mask, draws in ((torch.zeros(4, 8, dtype=torch.uint8), 22), (torch.arange(32).view(4, 8) % 2, 2)):
        g, reference = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        choose_crop(crop_mask, (4, 4), g, 0.75)
        for _ in range(draws):
            torch.randint(0, 5, (), generator=reference)
        assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=reference))


def test_hsv_round_trip_and_colorsys_agree() -> None:
    rgb = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    rgb[:, 0, 0] = 0.5  # grey: no hue
    hsv = rgb_to_hsv(rgb)
    expected = [colorsys.rgb_to_hsv(*rgb[:, i, j].tolist()) for i in range(5) for j in range(7)]
    assert torch.allclose(hsv.permute(1, 2, 0).reshape(-1, 3), torch.tensor(expected), atol=1e-5)
    assert torch.allclose(hsv_to_rgb(hsv), rgb, atol=1e-5)


def test_photometric_distortion_keeps_range_and_handles_grey() -> None:
    g = torch.Generator().manual_seed(1)
    for channels in (1, 3):
        image = torch.rand(channels, 6, 6, generator=torch.Generator().manual_seed(0)) * 255
        for _ in range(5):
            out = photometric_distortion(image, g)
            assert out.shape == image.shape and out.min() >= 0 and out.max() <= 255


def test_an_epoch_depends_on_seed_and_epoch_only(tmp_path: Path) -> None:
    data = _data(tmp_path)

    def loader(seed: int) -> SegmentationTrainLoader:
        return make_segmentation_loader(data, data.train, "cpu", 2, True, seed=seed)

    first = loader(0)
    epoch0, epoch1 = list(first), list(first)
    resumed = loader(0)
    resumed.set_epoch(1)
    for (xa, ya), (xb, yb) in zip(epoch1, list(resumed)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(epoch0, epoch1))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(epoch0, list(loader(1))))


# Evaluation loader and sliding windows

def test_eval_loader_gives_whole_images_in_order_grouped_by_size(tmp_path: Path) -> None:
    _make(tmp_path, splits=("train",))
    sizes = [(8, 12), (8, 12), (10, 6), (8, 12)]
    written = [_pair(k, size) for k, size in enumerate(sizes)]
    for k, (image, mask) in enumerate(written):
        _save(tmp_path / "test/images" / f"t{k}.png", image)
        _save(tmp_path / "test/masks" / f"t{k}.png", mask)
    data = open_segmentation("segfolder", tmp_path, QUIET)
    loader = make_segmentation_loader(data, data.test, "cpu", batch_size=4, train=False)
    assert len(loader) == 3 and [loader.global_batch_size(s) for s in range(3)] == [2, 1, 1]
    batches = list(loader)
    assert [tuple(y.shape) for _, y in batches] == [(2, 8, 12), (1, 10, 6), (1, 8, 12)]
    masks = [m for _, y in batches for m in y]
    images = [im for x, _ in batches for im in x]
    mean, std = torch.tensor(data.mean).view(3, 1, 1), torch.tensor(data.std).view(3, 1, 1)
    for (image, mask), got_mask, got_image in zip(written, masks, images):
        assert got_mask.dtype == torch.int64 and np.array_equal(got_mask.numpy(), mask)
        restored = ((got_image * std + mean) * 255).round().permute(1, 2, 0).numpy()
        assert np.array_equal(restored, image)
    assert list(loader)[1][1].shape == (1, 10, 6)  # every pass the same


def test_sliding_window_equals_a_whole_image_call_for_a_1x1_conv() -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, kernel_size=1)
    x = torch.randn(2, 3, 37, 53)
    with torch.no_grad():
        whole = model(x)
        windows = sliding_window_logits(model, x, crop=(16, 20), stride=(10, 12), num_classes=4)
        small = sliding_window_logits(model, x[:, :, :9, :9], crop=16, stride=8, num_classes=4)
    assert windows.shape == whole.shape and torch.allclose(windows, whole, atol=1e-5)
    assert torch.allclose(small, whole[:, :, :9, :9], atol=1e-5)  # smaller than one window: one call


def test_sliding_window_averages_overlaps() -> None:
    calls = []

    def model(window: torch.Tensor) -> torch.Tensor:  # each window scores its own index everywhere
        calls.append(window.shape[-2:])
        return torch.full((1, 1, *window.shape[-2:]), float(len(calls)))

    out = sliding_window_logits(model, torch.zeros(1, 1, 4, 6), crop=4, stride=2, num_classes=1)
    # windows at left 0 and 2 (ends at the edge): columns 2-3 covered by both
    assert calls == [(4, 4), (4, 4)]
    assert out[0, 0, 0].tolist() == [1, 1, 1.5, 1.5, 2, 2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_an_epoch_is_the_same_on_cpu_and_gpu(tmp_path: Path) -> None:
    data = _data(tmp_path)
    cpu = make_segmentation_loader(data, data.train, "cpu", 2, True, seed=4)
    gpu = make_segmentation_loader(data, data.train, "cuda", 2, True, seed=4)
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert torch.equal(yc, yg.cpu()) and torch.allclose(xc, xg.cpu(), atol=1e-3)


def test_a_progress_bar_is_closed_before_an_error_leaves_it():
    """The bar draws its last state before the error propagates, so the error is the last line a user sees."""
    from tqdm import tqdm

    from infopro.data.progress import progress_map

    def decode(i):
        if i == 2:
            raise InfoProError("mask 2 is an RGB colour image")
        return i

    with pytest.raises(InfoProError):
        progress_map(decode, range(5), "train masks", "mask", True)
    assert not list(getattr(tqdm, "_instances", []))
    assert progress_map(decode, range(2), "train masks", "mask", False) == [0, 1]


def test_sliding_window_takes_the_class_count_from_the_first_window():
    """The task's slide evaluation runs each window once (no probe pass to learn the class count)."""
    from infopro.tasks import build_task

    model = torch.nn.Conv2d(3, 5, 1)
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape[-2:])))
    task = build_task("segment", crop_size=(16, 16), evaluation="slide")
    x = torch.randn(2, 3, 32, 40)
    with torch.no_grad():
        logits = task.eval_logits(model, x, torch.zeros(2, 32, 40, dtype=torch.long))
        assert torch.allclose(logits, model(x), atol=1e-5)
    assert len(calls) - 1 == 3 * 4 and all(c == (16, 16) for c in calls[:-1])  # 3 x 4 windows, then the check

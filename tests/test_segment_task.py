"""The segmentation task as a whole: gradient isolation with the FCN auxiliary head, one InfoPro step against the
authors' equations, the refusals, the poly schedule per iteration (and its resume), a short run that learns, and
--task chosen from the data. Tiny data (32x32 image + mask PNGs in tmp_path); the learner-level tests use
deeplabv3_resnet18, the runs of `infopro train` a narrow DeepLabV3 (`TINY`)."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch.optim.optimizer import register_optimizer_step_pre_hook

from infopro import InfoProError, LocalLearner, build_backbone
from infopro.cli import main
from infopro.local.methods import METHODS
from infopro.models import ARCHITECTURES
from infopro.models.segmentation import dilated_resnet
from infopro.tasks import build_task
from infopro.tasks.segment import SEGMENT_METHODS
from infopro.train import add_train_arguments, load_checkpoint
from infopro.train.args import check_args, choose_task_and_dataset
from infopro.train.parts import build_learner
from conftest import stop_after_first_checkpoint

ARCH = "deeplabv3_resnet18"  # blocks: 0 stem, 1-2 layer1, 3-4 layer2, 5-6 layer3, 7-8 layer4; the FCN tap is 6
TAP = 6
COLOURS = np.array([(220, 40, 40), (40, 40, 220), (40, 200, 40)], np.uint8)


# The runs of `infopro train` below use a narrow DeepLabV3 (the same code as deeplabv3_resnet18, one basic block
# per stage, widths 8-64): blocks 0 stem, 1 layer1, 2 layer2, 3 layer3 (the FCN tap), 4 layer4. ResNet-18's
# checkpoints alone (~150 MB a save) would cost seconds per epoch.
TINY = "deeplabv3_tiny_test"


def tiny_deeplab(num_classes: int = 19, in_channels: int = 3):
    return dilated_resnet((1, 1, 1, 1), False, num_classes, in_channels, widths=(8, 16, 32, 64), arch=TINY)


@pytest.fixture(autouse=True)
def _fast_runs(monkeypatch):
    """The tiny architecture registered for the test; curves.png not drawn (matplotlib: ~1 s an epoch here)."""
    monkeypatch.setitem(ARCHITECTURES._entries, TINY, tiny_deeplab)
    monkeypatch.setattr("infopro.train.run_log.plot_curves", lambda history, title: b"")


def write_pairs(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """SPLIT/images + SPLIT/masks, 32x32: class 0 left of a random column, class 1 right of it, class 2 an 8x8
    square; each class has its own colour (plus noise), so the mask is a function of the image."""
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for d in ("images", "masks"):
            (root / split / d).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            mask = np.zeros((32, 32), np.uint8)
            mask[:, rng.integers(8, 25):] = 1
            r, c = rng.integers(0, 24, 2)
            mask[r:r + 8, c:c + 8] = 2
            image = np.clip(COLOURS[mask].astype(int) + rng.integers(-25, 26, (32, 32, 3)), 0, 255)
            Image.fromarray(image.astype(np.uint8)).save(root / split / "images" / f"{k}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{k}.png")
    return root


def write_class_folder(root: Path) -> Path:
    """train/<class>/ and test/<class>/ of 8x8 images, two classes of two images each: a classification set."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k, colour in enumerate([(220, 30, 30), (30, 30, 220)]):
            (root / split / f"c{k}").mkdir(parents=True)
            for i in range(2):
                a = np.clip(np.array(colour) + rng.normal(0, 20, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(root / split / f"c{k}" / f"{i}.png")
    return root


def segmentation_learner(K, cuts, method="infopro-softmax", lambdas=(1, 1, 1, 1), **task_settings):
    torch.manual_seed(0)
    return LocalLearner(build_backbone(ARCH, 3), K, method, cuts=cuts, input_shape=(3, 32, 32), num_classes=3,
                        lambdas=lambdas, task=build_task("segment", **task_settings))


def batch(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    mask = torch.randint(0, 3, (n, 32, 32), generator=g)
    mask[:, :10] = 255  # a third of the pixels unlabelled: the two averagings differ
    return x, mask


def grads(modules):
    return [p.grad.clone() if p.grad is not None else None for m in modules for p in m.parameters()]


def seeded_step(model, x, y):
    torch.manual_seed(1)  # the same dropout masks in every call
    model.zero_grad(set_to_none=True)
    model.train_step(x, y)


# 1. Gradient isolation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("K, cuts, aux_head", [(2, [5], True), (2, [6], False), (3, [2, 5], True), (3, [3, 6], False)])
def test_no_gradient_crosses_a_cut(K, cuts, aux_head):
    """Perturbing pieces k.. changes no gradient of pieces ..k-1 (bitwise); the FCN auxiliary head exists only
    where its block (6) lies in the last piece."""
    learner = segmentation_learner(K, cuts)
    assert (learner.aux[-1].aux_head is not None) == aux_head
    x, y = batch()
    for k in range(1, K):
        model = copy.deepcopy(learner)
        seeded_step(model, x, y)
        before = grads([*model.pieces[:k], *model.aux[:k]])
        later_before = grads([*model.pieces[k:], *model.aux[k:]])
        assert all(g is not None for g in before)
        with torch.no_grad():
            for module in [*model.pieces[k:], *model.aux[k:]]:
                for p in module.parameters():
                    p.add_(torch.randn_like(p))
        seeded_step(model, x, y)
        after = grads([*model.pieces[:k], *model.aux[:k]])
        assert all(torch.equal(a, b) for a, b in zip(before, after)), f"a piece <= {k} changed"
        later_after = grads([*model.pieces[k:], *model.aux[k:]])
        assert any(not torch.equal(a, b) for a, b in zip(later_before, later_after) if a is not None)


@pytest.mark.parametrize("K, cuts", [(2, [5]), (2, [3]), (3, [2, 5])])
def test_the_fcn_head_trains_its_block_and_nothing_later(K, cuts):
    """With the tap block in the last piece, the auxiliary term reaches the tap block and the blocks before it in
    that piece, not the later blocks or the decode head (bitwise equal to a run without it)."""
    learner = segmentation_learner(K, cuts)
    without = copy.deepcopy(learner)
    without.aux[-1].aux_weight = 0.0
    x, y = batch()
    seeded_step(learner, x, y)
    seeded_step(without, x, y)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.aux[-1].aux_head.parameters())
    blocks, other_blocks = learner._backbone.blocks, without._backbone.blocks
    first = cuts[-1] + 1
    for i in range(first, TAP + 1):  # the last piece's blocks up to the tap: trained by the FCN head too
        assert any(not torch.equal(a, b) for a, b in zip(grads([blocks[i]]), grads([other_blocks[i]]))), i
    for a, b in [(blocks[i], other_blocks[i]) for i in range(TAP + 1, len(blocks))] + \
                [(learner._backbone.head, without._backbone.head)]:
        assert all(torch.equal(u, v) for u, v in zip(grads([a]), grads([b])))
    for k in range(K - 1):  # earlier pieces never see it
        assert all(torch.equal(u, v) for u, v in zip(grads([learner.pieces[k], learner.aux[k]]),
                                                      grads([without.pieces[k], without.aux[k]])))


def test_cut_after_the_tap_block_has_no_fcn_head_and_the_tap_keeps_nothing():
    learner = segmentation_learner(2, [TAP])
    assert learner.aux[1].aux_head is None and not learner._backbone.blocks[TAP]._forward_hooks
    x, y = batch()
    learner.train_step(x, y)
    assert set(learner.aux[1].last_terms) == {"task"}


# 2. One InfoPro step against the authors' equations --------------------------------------------------------

def test_one_infopro_step_is_the_authors_equations():
    """mmseg `EncoderDecoder.forward_train` (the authors' fork), restated with the same weights and batch:
    piece 1: loss_recons * BCE(decoder_inter(x), image / 255) + loss_task * CrossEntropyLoss(ignore_index=255)(
    resize(head_inter(x), align_corners=True), mask); piece 2: mmseg 0.10's decode-head loss (resize with
    align_corners=False, cross-entropy per pixel, ignored pixels 0, mean over ALL pixels) + 0.4 x the same for
    the FCN auxiliary head on layer3's output."""
    recon, task = 1.5, 0.5
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    torch.manual_seed(0)
    learner = LocalLearner(build_backbone(ARCH, 3), 2, "infopro-softmax", cuts=[5], input_shape=(3, 32, 32),
                           num_classes=3, lambdas=(recon, task, recon, task), mean=mean, std=std,
                           task=build_task("segment"))
    # Dropout aside (its masks would have to be drawn in the same order): every Dropout2d off, BatchNorm training.
    learner.train()
    for m in learner.modules():
        if isinstance(m, torch.nn.Dropout2d):
            m.eval()
    reference = copy.deepcopy(learner)
    g = torch.Generator().manual_seed(3)
    image01 = torch.rand(2, 3, 32, 32, generator=g)
    x = (image01 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    _, mask = batch()
    ours = learner.train_step(x, mask)["losses"]

    blocks, decode_head = reference._backbone.blocks, reference._backbone.head
    decoder_inter, head_inter = reference.aux[0].decoder, reference.aux[0].head
    fcn_head = reference.aux[1].aux_head
    size = mask.shape[-2:]

    # forward_train1: stem .. block 5, then loss0.backward()
    h = x
    for block in blocks[:6]:
        h = block(h)
    scale_pred = F.interpolate(head_inter(h), size=size, mode="bilinear", align_corners=True)
    loss_task = F.cross_entropy(scale_pred, mask, ignore_index=255) * task
    loss_recons = F.binary_cross_entropy(torch.sigmoid(decoder_inter(h)), image01) * recon
    (loss_task + loss_recons).backward()

    # forward_train2 on x.detach(): layer3's output feeds the auxiliary head, layer4's the decode head
    def mmseg_loss(logits):
        resized = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return F.cross_entropy(resized, mask, ignore_index=255, reduction="none").mean()

    h = h.detach()
    layer3 = blocks[6](h)
    layer4 = blocks[8](blocks[7](layer3))
    loss_decode, loss_aux = mmseg_loss(decode_head(layer4)), 0.4 * mmseg_loss(fcn_head(layer3))
    (loss_decode + loss_aux).backward()

    assert ours == pytest.approx([(loss_task + loss_recons).item(), (loss_decode + loss_aux).item()], rel=1e-5)
    for k in range(2):
        mine = list(learner.pieces[k].named_parameters()) + list(learner.aux[k].named_parameters())
        theirs = dict(list(reference.pieces[k].named_parameters()) + list(reference.aux[k].named_parameters()))
        assert mine and len(mine) == len(theirs)
        for name, p in mine:
            assert p.grad is not None, name
            torch.testing.assert_close(p.grad, theirs[name].grad, rtol=1e-4, atol=1e-6, msg=f"piece {k + 1} {name}")
    # The test can tell the averagings apart: the last piece's loss over labelled pixels only is another number.
    labelled = (mask != 255).float().mean().item()
    assert ours[1] != pytest.approx(ours[1] / labelled, rel=0.05)


# 3. Refusals -------------------------------------------------------------------------------------------------

RIVALS = [m for m in METHODS.names() if m not in SEGMENT_METHODS]


def test_every_method_without_a_per_pixel_objective_is_refused_in_one_line():
    assert "infopro-contrast" in RIVALS and {"predsim", "auglocal", "man", "hpff"} <= set(RIVALS)
    for method in RIVALS:
        with pytest.raises(InfoProError) as error:
            LocalLearner(build_backbone(ARCH, 3), 2, method, cuts=[5], input_shape=(3, 32, 32), num_classes=3,
                         task=build_task("segment"))
        message = str(error.value)
        assert "\n" not in message and f"method {method!r} has no per-pixel objective" in message
        assert "infopro-softmax" in message


def test_a_classification_backbone_is_refused_naming_the_segmentation_archs():
    with pytest.raises(InfoProError, match=r"deeplabv3_resnet18.*fcn_resnet18") as error:
        LocalLearner(build_backbone("resnet32", 3), 2, "greedy", num_classes=3, task=build_task("segment"))
    assert "\n" not in str(error.value)


def one_line_exit_2(capsys, argv, *expected):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("infopro train: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err


def test_train_refusals_are_one_line_and_exit_2(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs", {"train": 4, "test": 2})
    run = ["train", "--device", "cpu", "--quiet", "--epochs", "1", "--batch-size", "2"]
    seg = [*run, "--data-dir", str(pairs), "--arch", ARCH, "--K", "2", "--cuts", "5"]
    for method in ("infopro-contrast", "predsim"):
        one_line_exit_2(capsys, [*seg, "--method", method, "--out", str(tmp_path / method)],
                        f"method {method!r} has no per-pixel objective")
    one_line_exit_2(capsys, [*run, "--data-dir", str(pairs), "--arch", "resnet32", "--method", "greedy", "--K", "2",
                             "--out", str(tmp_path / "r32")], "deeplabv3_resnet18", "fcn_resnet18")
    one_line_exit_2(capsys, [*run, "--task", "segment", "--dataset", "cifar10", "--out", str(tmp_path / "a")],
                    "--task segment needs targets of kind 'mask'")
    one_line_exit_2(capsys, [*run, "--task", "segment", "--arch", ARCH, "--out", str(tmp_path / "b")],
                    "segfolder has no bundled copy")  # the bundled CIFAR-10 is no segmentation set
    one_line_exit_2(capsys, [*run, "--task", "classify", "--data-dir", str(pairs), "--out", str(tmp_path / "c")],
                    "--task classify needs targets of kind 'class'", "holds targets of kind 'mask'", "--task segment")
    classes = write_class_folder(tmp_path / "classes")
    one_line_exit_2(capsys, [*run, "--task", "segment", "--data-dir", str(classes), "--out", str(tmp_path / "d")],
                    "--task segment needs targets of kind 'mask'", "holds targets of kind 'class'", "--task classify")
    assert not any((tmp_path / name).exists() for name in ("infopro-contrast", "predsim", "r32", "a", "b", "c", "d"))


# 4. The poly schedule per iteration, and its resume ------------------------------------------------------------

@pytest.fixture
def step_lrs():
    """The learning rate of every optimiser step taken while the fixture is alive."""
    seen: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: seen.append(optimizer.param_groups[0]["lr"]))
    yield seen
    handle.remove()


def test_poly_per_iteration_takes_exactly_iters_steps_and_resumes_bitwise(tmp_path, monkeypatch, step_lrs):
    """lr(t) = (lr0 - min) (1 - t/T)^0.9 + min before each of exactly T steps, the last epoch cut short; a run
    killed after its first checkpoint and resumed takes the same steps at the same rates to the same weights
    (dropout included: the decode, dense and FCN heads draw from torch's generator)."""
    pairs = write_pairs(tmp_path / "pairs", {"train": 6, "test": 2})
    lr0, floor, T = 0.02, 1e-4, 7  # 6 images in batches of 2: 3 steps per epoch, so epochs of 3, 3 and 1 step
    flags = ["train", "--data-dir", str(pairs), "--arch", TINY, "--K", "2", "--cuts", "2", "--method",
             "infopro-softmax", "--batch-size", "2", "--lr", str(lr0), "--min-lr", str(floor), "--schedule", "poly",
             "--schedule-per", "iteration", "--iters", str(T), "--device", "cpu", "--quiet"]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main([*flags, "--out", str(straight)]) == 0
    expected = [(lr0 - floor) * (1 - t / T) ** 0.9 + floor for t in range(T)]
    assert len(step_lrs) == T
    assert step_lrs == pytest.approx(expected, rel=1e-12)
    config = yaml.safe_load((straight / "config.yaml").read_text())
    assert config["iters"] == T and config["epochs"] == 3
    assert load_checkpoint(straight / "checkpoint.pt")["epoch"] == 3

    uninterrupted = list(step_lrs)
    step_lrs.clear()
    stop_after_first_checkpoint(monkeypatch, lambda: main([*flags, "--out", str(interrupted)]))
    assert len(step_lrs) == 3
    assert main(["train", "--out", str(interrupted), "--resume", "--quiet"]) == 0
    assert step_lrs == uninterrupted  # bitwise: the same formula at the same step
    a, b = (load_checkpoint(d / "checkpoint.pt")["model"] for d in (straight, interrupted))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# 5. A short run learns, and the same seed gives the same run -----------------------------------------------------

def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def constant_miou(masks: list[np.ndarray], classes: int = 3) -> float:
    """The best mean IoU of one class predicted everywhere: its share of the labelled pixels over the classes."""
    counts = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=classes)[:classes]
    return counts.max() / counts.sum() / classes


def test_a_short_run_learns_above_chance_and_is_deterministic(tmp_path):
    pairs = write_pairs(tmp_path / "pairs", {"train": 24, "test": 4})
    flags = ["train", "--data-dir", str(pairs), "--arch", TINY, "--K", "2", "--cuts", "2", "--method",
             "infopro-softmax", "--epochs", "8", "--batch-size", "4", "--lr", "0.1", "--device", "cpu", "--quiet"]
    assert main([*flags, "--out", str(tmp_path / "a")]) == 0
    assert main([*flags, "--out", str(tmp_path / "b")]) == 0
    a, b = summary_of(tmp_path / "a"), summary_of(tmp_path / "b")
    chance = 100 * constant_miou([np.array(Image.open(p)) for p in sorted((pairs / "test" / "masks").iterdir())])
    assert chance < 20
    assert a["test_miou"] > chance + 25, (a["test_miou"], chance)

    def numbers(run: str) -> list[dict]:  # every epoch's record but its timings and memory
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not any(w in k for w in ("second", "memory"))}
                for line in lines]

    assert numbers("a") == numbers("b") and len(numbers("a")) == 8
    assert a["test_miou"] == b["test_miou"] and a["test_class_iou"] == b["test_class_iou"]


# 6. --task from the data ------------------------------------------------------------------------------------------

def test_a_pair_folder_trains_as_segment_and_class_folders_as_classify(tmp_path):
    pairs = write_pairs(tmp_path / "pairs", {"train": 4, "test": 2})
    assert main(["train", "--data-dir", str(pairs), "--arch", TINY, "--K", "2", "--cuts", "2", "--method", "greedy",
                 "--batch-size", "2", "--iters", "1", "--device", "cpu", "--quiet", "--out", str(tmp_path / "seg")]) == 0
    config = yaml.safe_load((tmp_path / "seg" / "config.yaml").read_text())
    assert (config["task"], config["dataset"]) == ("segment", "segfolder")
    assert summary_of(tmp_path / "seg")["task"] == "segment"

    # No --data-dir (the bundled CIFAR-10) and a folder of class folders stay classification.
    classes = write_class_folder(tmp_path / "classes")
    for data_dir, dataset in ((None, None), (classes, None), (classes, "folder")):
        args = train_parser().parse_args([*(["--data-dir", str(data_dir)] if data_dir else []),
                                          *(["--dataset", dataset] if dataset else [])])
        choose_task_and_dataset(args)
        assert (args.task, args.dataset) == ("classify", dataset or "cifar10")
    assert main(["train", "--arch", "resnet20", "--K", "2", "--cuts", "even", "--method", "greedy", "--epochs", "1",
                 "--device", "cpu", "--quiet", "--dataset", "folder", "--data-dir", str(classes), "--batch-size", "2",
                 "--out", str(tmp_path / "folder")]) == 0
    config = yaml.safe_load((tmp_path / "folder" / "config.yaml").read_text())
    assert (config["task"], config["dataset"]) == ("classify", "folder")
    assert summary_of(tmp_path / "folder")["task"] == "classify"


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser


# 7. the task's defaults and --pretrained --------------------------------------------------------------------------

def test_a_pair_folder_alone_gets_the_segmentation_defaults(tmp_path):
    pairs = write_pairs(tmp_path / "pairs", {"train": 2, "test": 1})
    args = train_parser().parse_args(["--data-dir", str(pairs)])
    check_args(args)
    assert (args.task, args.dataset, args.arch, args.method) == ("segment", "segfolder", "deeplabv3_resnet18",
                                                                 "infopro-softmax")
    args = train_parser().parse_args([])
    check_args(args)
    assert (args.task, args.arch, args.method) == ("classify", "resnet32", "infopro-contrast")


def test_pretrained_weights_start_the_backbone_and_say_what_matched(tmp_path, capsys):
    source = tiny_deeplab(3)
    for p in source.parameters():
        torch.nn.init.normal_(p)  # unlike any fresh initialisation
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}}, path)
    args = train_parser().parse_args(["--arch", TINY, "--task", "segment", "--pretrained", str(path), "--K", "2",
                                      "--cuts", "2"])
    check_args(args)
    learner = build_learner(args, (3, 32, 32), 3, (0.5,) * 3, (0.5,) * 3, torch.device("cpu"))
    ours = learner.export().state_dict()
    assert all(torch.equal(ours[k], v) for k, v in source.state_dict().items())
    assert "--pretrained" in capsys.readouterr().out

    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "nothing.pth")  # nothing of the backbone in it
    args.pretrained = str(tmp_path / "nothing.pth")
    with pytest.raises(InfoProError):
        build_learner(args, (3, 32, 32), 3, (0.5,) * 3, (0.5,) * 3, torch.device("cpu"))
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    args.pretrained = str(tmp_path / "junk.pth")
    with pytest.raises(InfoProError, match="junk.pth"):
        build_learner(args, (3, 32, 32), 3, (0.5,) * 3, (0.5,) * 3, torch.device("cpu"))

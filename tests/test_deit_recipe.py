"""The DeiT recipe's options: AdamW and its decay groups, label smoothing, RandAugment, random erasing,
mixup/cutmix with soft targets, model EMA; each checked on its own and through `infopro train`."""

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image, ImageEnhance, ImageOps

from infopro import InfoProError, LocalLearner, build_backbone
from infopro.cli import main
from infopro.data import DeviceLoader, ExtraAugment
from infopro.data.erasing import random_erase
from infopro.data.mixing import mix_batch
from infopro.data.randaugment import OPS, rand_augment
from infopro.local.losses import CrossEntropyTerm, SupConTerm
from infopro.models.vit import vision_transformer
from infopro.parallel.merge import (global_indices, merge_optimizer_states, optimizer_parameters, optimizer_state_for,
                                    optimizer_state_to_global)
from infopro.train import load_checkpoint
from infopro.train.parts import decay_exempt, make_optimizer
from conftest import FAST, stop_after_first_checkpoint


def optimizer_args(**changes):
    values = dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, decay_norm_bias=None)
    return argparse.Namespace(**{**values, **changes})


def tiny_learner(method="infopro-softmax", K=2):
    return LocalLearner(build_backbone("resnet20", 10), K, method, cuts="even", num_classes=10)


# -- optimiser ---------------------------------------------------------------------------------------------


def test_adamw_exempts_norms_biases_position_embedding_and_class_token_from_decay():
    vit = vision_transformer(32, 8, 16, 1, 2, num_classes=4)
    exempt = decay_exempt(vit.named_parameters())
    names = {name for name, p in vit.named_parameters() if id(p) in exempt}
    assert {"blocks.0.pos_embed", "blocks.0.cls_token"} <= names
    assert all(name.endswith(("bias", "pos_embed", "cls_token")) or "norm" in name for name in names), names
    assert all(p.ndim >= 2 for name, p in vit.named_parameters() if id(p) not in exempt)
    adamw = make_optimizer(vit.parameters(), optimizer_args(optimizer="adamw", weight_decay=0.05), exempt)
    assert isinstance(adamw, torch.optim.AdamW)
    decayed, free = adamw.param_groups
    assert decayed["weight_decay"] == 0.05 and free["weight_decay"] == 0.0
    assert {id(p) for p in free["params"]} == exempt
    # SGD keeps the paper's one group (every parameter decayed); --no-decay-norm-bias splits it too.
    sgd = make_optimizer(vit.parameters(), optimizer_args(), exempt)
    assert isinstance(sgd, torch.optim.SGD) and len(sgd.param_groups) == 1
    assert len(make_optimizer(vit.parameters(), optimizer_args(decay_norm_bias=False), exempt).param_groups) == 2


def test_mesh_checkpoints_number_two_groups_as_one_process_does():
    """Two "ranks" each holding one piece: their renumbered states merge into the single-process state dict,
    and each rank's part of that state dict loads back into its own optimiser."""
    learner = tiny_learner()
    args = optimizer_args(optimizer="adamw", weight_decay=0.05)
    exempt = decay_exempt(learner.named_parameters())
    whole = make_optimizer(learner.parameters(), args, exempt)
    order = optimizer_parameters(whole)
    ranks = []
    for k in range(2):
        params = [*learner.pieces[k].parameters(), *learner.aux[k].parameters()]
        ranks.append(make_optimizer(params, args, exempt))
    for p in learner.parameters():
        p.grad = torch.randn_like(p)
    whole.step()
    for optimizer in ranks:
        optimizer.step()
    parts = [optimizer_state_to_global(o.state_dict(), global_indices(order, optimizer_parameters(o))) for o in ranks]
    merged, reference = merge_optimizer_states(parts), whole.state_dict()
    assert [g["params"] for g in merged["param_groups"]] == [g["params"] for g in reference["param_groups"]]
    assert sorted(merged["state"]) == sorted(reference["state"])
    for i, s in reference["state"].items():
        assert torch.equal(merged["state"][i]["exp_avg"], s["exp_avg"])
    for optimizer in ranks:
        indices = global_indices(order, optimizer_parameters(optimizer))
        sizes = [len(g["params"]) for g in optimizer.param_groups]
        optimizer.load_state_dict(optimizer_state_for(merged, indices, sizes))
        assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]


# -- label smoothing and soft targets ---------------------------------------------------------------------


def test_label_smoothing_is_the_last_pieces_and_follows_its_equation():
    learner = LocalLearner(build_backbone("resnet20", 10), 2, "dgl", cuts="even", num_classes=10, label_smoothing=0.1)
    assert learner.aux[-1].task_loss.label_smoothing == 0.1
    assert learner.aux[0].task_loss.label_smoothing == 0.0  # the local head keeps plain targets
    logits, labels = torch.randn(6, 10), torch.randint(0, 10, (6,))
    log_p = logits.log_softmax(1)
    by_hand = (0.9 * -log_p[torch.arange(6), labels] + 0.1 * -log_p.mean(1)).mean()
    assert torch.allclose(CrossEntropyTerm(0.1)(logits, labels), by_hand, atol=1e-6)
    # soft targets t: sum over classes of -((1 - s) t + s / C) log p
    soft = torch.softmax(torch.randn(6, 10), 1)
    by_hand = -((0.9 * soft + 0.01) * log_p).sum(1).mean()
    assert torch.allclose(CrossEntropyTerm(0.1)(logits, soft), by_hand, atol=1e-6)


@pytest.mark.parametrize("method", ["greedy", "dgl", "infopro-softmax", "predsim", "auglocal"])
def test_cross_entropy_methods_train_on_soft_targets(method):
    learner = tiny_learner(method)
    assert learner.takes_soft_targets
    x, soft = torch.randn(4, 3, 32, 32), torch.softmax(torch.randn(4, 10), 1)
    losses = learner.train_step(x, soft)["losses"]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_supervised_contrastive_loss_refuses_soft_targets(tmp_path, capsys):
    assert not tiny_learner("infopro-contrast").takes_soft_targets
    with pytest.raises(InfoProError, match="needs class labels"):
        SupConTerm()(torch.randn(4, 8), torch.softmax(torch.randn(4, 10), 1))
    assert main(["train", *FAST, "--mixup", "0.8", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "supervised contrastive loss, which needs class labels" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


# -- augmentation -----------------------------------------------------------------------------------------


def test_mixup_and_cutmix_mix_images_and_targets_alike():
    x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 5, (6,))
    one_hot = F.one_hot(y, 5).float()
    mixed, targets, lam = mix_batch(x, y, torch.Generator().manual_seed(1), 5, mixup_alpha=0.8)
    assert 0 < lam < 1
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0))
    assert torch.allclose(targets, lam * one_hot + (1 - lam) * one_hot.flip(0))
    mixed, targets, lam = mix_batch(x, y, torch.Generator().manual_seed(1), 5, cutmix_alpha=1.0)
    pasted = (mixed != x).any(1)  # (N, H, W): where the reversed batch shows through
    share = pasted[0].float().mean().item()
    assert lam == pytest.approx(1 - share) and torch.equal(pasted[0], pasted[1])  # one box for the batch
    assert torch.allclose(targets, lam * one_hot + (1 - lam) * one_hot.flip(0))
    same, targets, lam = mix_batch(x, y, torch.Generator().manual_seed(1), 5, 0.8, 1.0, prob=0.0)
    assert lam == 1.0 and torch.equal(same, x) and torch.equal(targets, one_hot)


def test_random_erasing_puts_one_box_of_noise_in_the_chosen_images():
    x = torch.zeros(40, 3, 24, 24)
    assert torch.equal(random_erase(x, torch.Generator().manual_seed(0), 0.0), x)
    out = random_erase(x, torch.Generator().manual_seed(0), 1.0)
    assert torch.equal(out, random_erase(x, torch.Generator().manual_seed(0), 1.0))  # the generator decides
    erased = 0
    for image in out:
        changed = (image != 0).any(0)
        if not changed.any():
            continue  # no box of the 10 tries fitted (rare)
        erased += 1
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        box = changed[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert box.all() and box.sum() == changed.sum()  # one filled rectangle
        assert 0.02 * 576 * 0.5 <= box.numel() <= 576 / 3 * 1.5
        assert (image[:, changed] != 0).all()  # every channel
    assert erased >= 36


def pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


FACTOR = {1: 1 + 0.81, -1: 1 - 0.81}  # the enhance ops' factor at magnitude 9 by sign
PIL_OPS = {  # op name -> PIL's function of (image, sign) at magnitude 9, as timm calls it
    "AutoContrast": lambda im, sign: ImageOps.autocontrast(im),
    "Equalize": lambda im, sign: ImageOps.equalize(im),
    "Invert": lambda im, sign: ImageOps.invert(im),
    "PosterizeIncreasing": lambda im, sign: ImageOps.posterize(im, 4 - int(0.9 * 4)),
    "SolarizeIncreasing": lambda im, sign: ImageOps.solarize(im, 256 - int(0.9 * 256)),
    "SolarizeAdd": lambda im, sign: im.point([min(255, i + int(0.9 * 110)) if i < 128 else i for i in range(256)] * 3),
    "ColorIncreasing": lambda im, sign: ImageEnhance.Color(im).enhance(FACTOR[sign]),
    "ContrastIncreasing": lambda im, sign: ImageEnhance.Contrast(im).enhance(FACTOR[sign]),
    "BrightnessIncreasing": lambda im, sign: ImageEnhance.Brightness(im).enhance(FACTOR[sign]),
    "SharpnessIncreasing": lambda im, sign: ImageEnhance.Sharpness(im).enhance(FACTOR[sign]),
}


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("name", list(PIL_OPS))
def test_randaugment_colour_ops_equal_pils(name, sign):
    images = torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[2] = images[2] // 4 + 100  # a low-contrast image
    ours = OPS[name](images, torch.full((3,), 9.0), torch.full((3,), float(sign)), torch.full((3,), 128.0))
    theirs = torch.stack([from_pil(PIL_OPS[name](pil(image), sign)) for image in images])
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name, transform", [
    ("Rotate", lambda im: im.rotate(27, resample=Image.BILINEAR, fillcolor=(128, 128, 128))),
    ("ShearX", lambda im: im.transform(im.size, Image.AFFINE, (1, 0.27, 0, 0, 1, 0), Image.BILINEAR, fillcolor=(128,) * 3)),
    ("ShearY", lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0.27, 1, 0), Image.BILINEAR, fillcolor=(128,) * 3)),
    ("TranslateXRel", lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0.405 * 32, 0, 1, 0), Image.BILINEAR,
                                              fillcolor=(128,) * 3)),
])
def test_randaugment_geometric_ops_move_pixels_as_pil_does(name, transform):
    # A smooth image, so that bilinear sampling differs from PIL's only by rounding.
    ramp = torch.linspace(0, 1, 32)
    image = torch.stack([ramp[None, :] * 200 + 20 + 0 * ramp[:, None], ramp[:, None] * 200 + 30 + 0 * ramp[None, :],
                         (ramp[:, None] + ramp[None, :]) * 100]).round().to(torch.uint8)
    ours = OPS[name](image[None], torch.tensor([9.0]), torch.ones(1), torch.full((3,), 128.0))[0]
    theirs = from_pil(transform(pil(image)))
    differs = (ours.int() - theirs.int()).abs()
    assert differs.float().mean() < 2 and (differs > 8).float().mean() < 0.03  # edges of the fill may differ


def test_rand_augment_is_per_image_seeded_and_keeps_uint8():
    images = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8)
    out = rand_augment(images, torch.Generator().manual_seed(3), 2, 9.0)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out, rand_augment(images, torch.Generator().manual_seed(3), 2, 9.0))
    assert (out != images).flatten(1).any(1).sum() >= 8  # each op has probability 0.5 per round
    assert torch.equal(rand_augment(images, torch.Generator().manual_seed(3), 0, 9.0), images)


def test_device_loader_applies_the_extra_steps_and_repeats_an_epoch_exactly():
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8), rng.integers(0, 4, 20)
    extra = ExtraAugment(randaugment_ops=2, erasing=0.25, mixup=0.8, cutmix=1.0, num_classes=4)
    make = lambda e: DeviceLoader(images, labels, "cpu", 10, (0.5,) * 3, (0.25,) * 3, train=True, extra=e)
    loader = make(extra)
    first = list(loader)
    loader.set_epoch(0)
    again = list(loader)
    for (x, y), (x2, y2) in zip(first, again):
        assert y.shape == (10, 4) and torch.allclose(y.sum(1), torch.ones(10))
        assert torch.equal(x, x2) and torch.equal(y, y2)
    plain = list(make(None))
    assert plain[0][1].dtype == torch.int64 and not torch.equal(plain[0][0], first[0][0])
    # The evaluation loader is never augmented.
    test = DeviceLoader(images, labels, "cpu", 10, (0.5,) * 3, (0.25,) * 3, train=False, extra=extra)
    assert next(iter(test))[1].dtype == torch.int64


# -- through `infopro train` ------------------------------------------------------------------------------


RECIPE = ["--method", "infopro-softmax", "--optimizer", "adamw", "--weight-decay", "0.05", "--label-smoothing",
          "0.1", "--mixup", "0.8", "--cutmix", "1.0", "--randaugment", "2", "9", "--random-erasing", "0.25"]


def test_the_recipe_trains_and_its_ema_resumes_exactly(tmp_path, monkeypatch):

    straight = tmp_path / "straight"
    flags = [*FAST, *RECIPE, "--model-ema", "0.9", "--train-subset", "100"]
    assert main(["train", *flags, "--out", str(straight)]) == 0
    config = yaml.safe_load((straight / "config.yaml").read_text())
    assert config["randaugment"] == [2.0, 9.0] and config["mixup"] == 0.8 and config["model_ema"] == 0.9
    assert config["optimizer"] == "adamw" and config["decay_norm_bias"] is False
    assert config["lr"] == pytest.approx(5e-4 * 50 / 512)  # DeiT: 5e-4 per 512 images
    record = json.loads((straight / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= record["ema_test_accuracy"] <= 1 and "ema_test_loss" in record
    state = load_checkpoint(straight / "checkpoint.pt")
    assert "model_ema" in state and int(state["model_ema"]["n_averaged"]) == 2 * 2  # 2 epochs of 2 steps
    assert [g["weight_decay"] for g in state["optimizer"]["param_groups"]] == [0.05, 0.0]

    interrupted = tmp_path / "interrupted"
    stop_after_first_checkpoint(monkeypatch, lambda: main(["train", *flags, "--out", str(interrupted)]))
    assert main(["train", *flags, "--out", str(interrupted), "--resume"]) == 0
    a, b = state, load_checkpoint(interrupted / "checkpoint.pt")
    for key in ("model", "model_ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


@pytest.mark.parametrize("extra, message", [
    (["--model-ema", "1.5"], "--model-ema must be a decay in (0, 1)"),
    (["--randaugment", "2.5", "9"], "--randaugment takes N"),
    (["--randaugment", "2", "11"], "--randaugment takes N"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    (["--mix-prob", "2"], "--mix-prob must be a probability in [0, 1]"),
    (["--random-erasing", "-0.1"], "--random-erasing must be a probability"),
    (["--model-ema", "0.99", "--parallel", "data"], "--model-ema runs in one process only"),
])
def test_bad_recipe_values_are_one_clear_line(tmp_path, capsys, extra, message):
    assert main(["train", *FAST, *extra, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_deit_small_config_parses_into_the_recipe():
    """configs/imagenet/vit_small-e2e-deit.yaml (scripts/make_configs.py): every key a flag, DeiT's values."""
    from pathlib import Path

    from infopro.train.args import add_train_arguments, check_args, read_config

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args([])
    path = Path(__file__).resolve().parents[1] / "configs" / "imagenet" / "vit_small-e2e-deit.yaml"
    vars(args).update(read_config(path, parser))
    check_args(args)
    assert (args.arch, args.method, args.K, args.epochs, args.batch_size) == ("vit_small", "e2e", 1, 300, 1024)
    assert args.optimizer == "adamw" and args.lr == pytest.approx(5e-4 * 1024 / 512) and args.weight_decay == 0.05
    assert args.decay_norm_bias is False and args.label_smoothing == 0.1
    assert (args.mixup, args.cutmix, args.mix_prob, args.mix_switch_prob) == (0.8, 1.0, 1.0, 0.5)
    assert args.randaugment == [2, 9] and args.randaugment_std == 0.5 and args.random_erasing == 0.25
    assert args.model_ema is None

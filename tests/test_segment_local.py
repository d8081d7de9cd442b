import copy
import gc

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from infopro import InfoProError
from infopro.local import Feature, aux_family_for
from infopro.local.aux_dense import DenseDecoder, DenseHead
from infopro.models.segmentation import fcn_aux_head
from infopro.local.aux_families import AUX_FAMILIES, check_embedding_head
from infopro.local.dense_losses import PixelCrossEntropyTerm, local_pixel_loss
from infopro.local.dense_objective import SegmentationLastObjective
from infopro.local.losses import TASK_LOSSES, reconstruction_loss


def conv_widths(module):
    return [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)]


def upsamples(module):
    return [m for m in module.modules() if isinstance(m, nn.Upsample)]


@pytest.mark.parametrize("stride, widths", [(8, [128, 32, 12, 3]), (16, [128, 64, 32, 12, 3])])
def test_dense_decoder_steps_follow_output_stride(stride, widths):
    decoder = DenseDecoder((16, 64 // stride, 96 // stride), (3, 64, 96))
    assert conv_widths(decoder) == widths
    assert len(upsamples(decoder)) == len(widths) - 1
    assert all(m.align_corners for m in upsamples(decoder))
    # BN + ReLU after every conv but the last; every conv has a bias, as the authors'.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in decoder) == len(widths) - 1
    assert isinstance(decoder[-1], nn.Conv2d)
    assert all(m.bias is not None for m in decoder if isinstance(m, nn.Conv2d))
    assert decoder(torch.randn(2, 16, 64 // stride, 96 // stride)).shape == (2, 3, 64, 96)


def test_dense_decoder_ends_at_the_image_size_when_the_ratio_is_not_a_power_of_two():
    decoder = DenseDecoder((8, 13, 13), (3, 100, 100))
    assert decoder(torch.randn(1, 8, 13, 13)).shape == (1, 3, 100, 100)


def test_dense_decoder_is_the_authors_decoder():
    """Layer for layer their decoder_inter (x2 upsamples with align_corners=True, sigmoid at the end)."""
    torch.manual_seed(0)
    c = 8

    def bn(n):
        return nn.BatchNorm2d(n)

    def up():
        return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)

    theirs = nn.Sequential(
        nn.Conv2d(c, 128, 1), bn(128), nn.ReLU(), up(),
        nn.Conv2d(128, 32, 3, padding=1), bn(32), nn.ReLU(), up(),
        nn.Conv2d(32, 12, 3, padding=1), bn(12), nn.ReLU(), up(),
        nn.Conv2d(12, 3, 3, padding=1), nn.Sigmoid(),
    )
    ours = DenseDecoder((c, 4, 6), (3, 32, 48))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    for a, b in zip(ours.parameters(), theirs.parameters()):
        b.data.copy_(torch.randn_like(a))
        a.data.copy_(b.data)
    x = torch.randn(2, c, 4, 6)
    ours.train(), theirs.train()
    torch.testing.assert_close(ours.reconstruct(x), theirs(x))
    # Their loss, BCE of the sigmoid against image / 255, is our BCE-with-logits.
    target = torch.randint(0, 256, (2, 3, 32, 48)).float() / 255
    torch.testing.assert_close(reconstruction_loss(ours(x), target), F.binary_cross_entropy(theirs(x), target))


def test_dense_head_shapes_and_layers():
    head = DenseHead((16, 5, 7), 19)
    assert head(torch.randn(2, 16, 5, 7)).shape == (2, 19, 5, 7)
    assert conv_widths(head) == [512, 19]
    assert head[0].kernel_size == (3, 3) and head[0].bias is not None
    assert isinstance(head[3], nn.Dropout2d) and head[3].p == 0.1
    assert conv_widths(DenseHead((16, 5, 7), 4, channels=32)) == [32, 4]


def test_fcn_aux_head_shapes():
    head = fcn_aux_head(16, 5, channels=256)
    assert head(torch.randn(2, 16, 3, 4)).shape == (2, 5, 3, 4)
    assert head.convs[0].conv.out_channels == 256 and head.convs[0].conv.bias is None
    assert head.conv_seg.out_channels == 5 and head.conv_cat is None


def logits_and_mask(ignore_some=True):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 5, generator=gen, requires_grad=True)
    mask = torch.randint(0, 4, (2, 9, 13), generator=gen)
    if ignore_some:
        mask[:, :3] = 255
    return logits, mask


@pytest.mark.parametrize("align_corners", [False, True])
def test_pixel_cross_entropy_matches_a_hand_computation(align_corners):
    logits, mask = logits_and_mask()
    up = F.interpolate(logits, size=(9, 13), mode="bilinear", align_corners=align_corners)
    # Mean over non-ignored pixels: torch's CrossEntropyLoss(ignore_index=255), the authors' local head.
    term = PixelCrossEntropyTerm(align_corners=align_corners, avg_non_ignore=True)
    torch.testing.assert_close(term(logits, mask), F.cross_entropy(up, mask, ignore_index=255))
    # Mean over all pixels: mmseg 0.10's decode head.
    term = PixelCrossEntropyTerm(align_corners=align_corners)
    expected = F.cross_entropy(up, mask, ignore_index=255, reduction="none").mean()
    torch.testing.assert_close(term(logits, mask), expected)
    torch.testing.assert_close(term(logits, mask[:, None]), expected)


def test_pixel_cross_entropy_all_ignored_is_zero_with_a_finite_gradient():
    logits, mask = logits_and_mask()
    mask.fill_(255)
    for term in (PixelCrossEntropyTerm(), local_pixel_loss()):
        loss = term(logits, mask)
        loss.backward()
        assert loss.item() == 0.0
        assert torch.isfinite(logits.grad).all() and not logits.grad.any()


def test_pixel_cross_entropy_under_autocast_is_float32():
    logits, mask = logits_and_mask()
    term = PixelCrossEntropyTerm()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = term(logits.bfloat16(), mask)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, term(logits.bfloat16().float(), mask))


def test_pixel_cross_entropy_refuses_bad_shapes():
    logits, mask = logits_and_mask()
    with pytest.raises(InfoProError, match="mask"):
        PixelCrossEntropyTerm()(logits[0], mask)
    with pytest.raises(InfoProError, match="integer"):
        PixelCrossEntropyTerm()(logits, mask.float())


def test_pixel_task_loss_is_registered_with_the_local_heads_settings():
    term = TASK_LOSSES.get("pixel-cross-entropy")(0.07)
    assert not term.output_is_embedding and term.align_corners and term.avg_non_ignore


def family_name(feature):
    family = aux_family_for(feature)
    return next(n for n in AUX_FAMILIES if AUX_FAMILIES.get(n) is family)


def test_the_dense_family_serves_dense_maps_only():
    assert family_name(Feature((16, 8, 8), (3, 64, 64), dense=True)) == "dense-map"
    assert family_name(Feature((16, 28, 28), (3, 224, 224), dense=True)) == "dense-map"
    # Classification features keep their families.
    assert family_name(Feature((16, 8, 8), (3, 32, 32))) == "small-map"
    assert family_name(Feature((16, 28, 28), (3, 224, 224))) == "large-map"
    assert family_name(Feature((16, 8), (3, 32, 32))) == "tokens"
    with pytest.raises(InfoProError, match="Per-pixel targets need a"):
        aux_family_for(Feature((16, 8), (3, 32, 32), dense=True))


def test_the_dense_family_builds_its_nets_and_refuses_embeddings():
    from infopro.local import AuxOptions

    feature = Feature((16, 8, 8), (3, 64, 64), dense=True)
    family = aux_family_for(feature)
    assert isinstance(family.decoder(feature, AuxOptions()), DenseDecoder)
    head = family.head("1c2f", feature, 19, AuxOptions())
    assert isinstance(head, DenseHead) and head(torch.randn(1, 16, 8, 8)).shape == (1, 19, 8, 8)
    with pytest.raises(InfoProError, match="contrastive"):
        check_embedding_head(family, feature)
    check_embedding_head(aux_family_for(Feature((16, 8, 8), (3, 32, 32))), feature)  # classification: fine


class TinySegmenter(nn.Module):
    """stem -> tap (whose output the FCN head reads) -> classifier: logits at 1/2 the mask size."""

    def __init__(self, classes=3):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.tap = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(6, classes, 1)

    def forward(self, x):
        return self.classifier(self.tap(self.stem(x)))


def segment_batch():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 8, 8, generator=gen), torch.randint(0, 3, (2, 8, 8), generator=gen)


def tap_grad(model, objective, x, y):
    model.zero_grad(set_to_none=True)
    objective(model(x), y).backward()
    objective.after_backward()
    return model.tap[0].weight.grad.clone()


def test_last_objective_adds_the_weighted_aux_term_and_its_gradient_reaches_the_tap():
    torch.manual_seed(0)
    model = TinySegmenter()
    x, y = segment_batch()
    plain = SegmentationLastObjective()
    with_aux = SegmentationLastObjective(model.tap, fcn_aux_head(6, 3, channels=8), aux_weight=0.4)
    model.train(), with_aux.eval()  # eval: no dropout in the aux head, so the terms can be recomputed
    loss = with_aux(model(x), y)
    assert set(with_aux.last_terms) == {"task", "aux"}
    expected_aux = PixelCrossEntropyTerm()(with_aux.aux_head(model.tap(model.stem(x))), y)
    torch.testing.assert_close(with_aux.last_terms["aux"], expected_aux.detach())
    torch.testing.assert_close(loss.detach(), with_aux.last_terms["task"] + 0.4 * expected_aux.detach())
    with_aux.last_terms = {}
    grad_task_only = tap_grad(model, plain, x, y)  # (with_aux's hook takes this forward's tap output too)
    assert not torch.allclose(tap_grad(model, with_aux, x, y), grad_task_only)
    assert with_aux._tap.output is None  # the step left nothing behind
    assert all(p.grad is not None for p in with_aux.aux_head.parameters())


def test_the_tap_holds_nothing_in_eval_mode_or_without_grad():
    model = TinySegmenter()
    x, y = segment_batch()
    objective = SegmentationLastObjective(model.tap, fcn_aux_head(6, 3, channels=8))
    model.eval()
    model(x)
    assert objective._tap.output is None
    model.train()
    with torch.no_grad():
        model(x)
    assert objective._tap.output is None
    with torch.no_grad():
        objective(model(x), y)
    assert set(objective.last_terms) == {"task"}


def test_a_deep_copy_of_the_backbone_gets_an_inert_hook():
    model = TinySegmenter()
    x, y = segment_batch()
    objective = SegmentationLastObjective(model.tap, fcn_aux_head(6, 3, channels=8))
    model(x)  # a training forward: the hook holds the tap's output
    copied = copy.deepcopy(model)
    assert objective._tap.output is not None
    objective(model(x), y)
    copied.train()(x)  # the copy's hook has no owner: it keeps nothing
    hooks = list(copied.tap._forward_hooks.values())
    assert len(hooks) == 1 and hooks[0].output is None and hooks[0] is not objective._tap
    assert objective._tap.output is None


def test_a_deep_copy_of_backbone_and_objective_together_works():
    model = TinySegmenter()
    x, y = segment_batch()
    objective = SegmentationLastObjective(model.tap, fcn_aux_head(6, 3, channels=8))
    model_copy, objective_copy = copy.deepcopy((model, objective))
    objective_copy(model_copy(x), y)
    assert set(objective_copy.last_terms) == {"task", "aux"}
    assert objective._tap.output is None


def test_a_dropped_objective_unhooks_its_block():
    model = TinySegmenter()
    objective = SegmentationLastObjective(model.tap, fcn_aux_head(6, 3, channels=8))
    assert len(model.tap._forward_hooks) == 1
    del objective
    gc.collect()
    assert len(model.tap._forward_hooks) == 0


def test_the_aux_head_needs_its_tap():
    with pytest.raises(InfoProError, match="tap_block and aux_head"):
        SegmentationLastObjective(None, fcn_aux_head(6, 3))
    with pytest.raises(InfoProError, match=">= 0"):
        SegmentationLastObjective(nn.Identity(), fcn_aux_head(6, 3), aux_weight=-1)

"""Recomputation inside pieces (`LocalLearner(recompute=...)`): bitwise the same training, less memory."""

import copy
import json

import pytest
import torch
from torch import nn

from infopro import InfoProError, LocalLearner, SequentialBackbone, build_backbone
from infopro.bench.live_memory import LiveTensorMeter
from infopro.cli import main
from infopro.local import local_step
from infopro.local.balance import MemoryProfile, linear_partition, piece_cost
from infopro.local.recompute import (RecomputedSequential, auto_segments, parse_recompute, segment_ranges,
                                     segments_for)
from infopro.tasks import build_task


def batch(n=8, seed=1, shape=(3, 32, 32)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)


def make(method="infopro-contrast", K=4, arch="resnet20", **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("cuts", "even")
    return LocalLearner(build_backbone(arch), K, method, **kwargs)


def train(learner, steps=3, shape=(3, 32, 32), make_batch=None):
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.1, momentum=0.9)
    for step in range(steps):
        x, y = make_batch(step) if make_batch else batch(seed=step, shape=shape)
        optimizer.zero_grad(set_to_none=True)
        learner.train_step(x, y)
        optimizer.step()
        learner.after_optimizer_step()
    return learner


def assert_bitwise_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)  # the same keys, in the same order
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_parse_and_segment_counts():
    assert [parse_recompute(v) for v in (None, 0, "off", "0", 3, "4", "auto", " AUTO ")] == \
        [None, None, None, None, 3, 4, "auto", "auto"]
    for bad in (-1, "x", 2.5, "1.5"):
        with pytest.raises(InfoProError, match="recompute must be"):
            parse_recompute(bad)
    # sqrt rule: 8 blocks -> 3, 28 -> 5 (ResNet-110's pieces), never more segments than modules.
    assert [auto_segments(n) for n in (1, 2, 3, 8, 12, 28)] == [1, 1, 2, 3, 3, 5]
    assert segments_for(4, 2) == 2 and segments_for("auto", 28) == 5 and segments_for(None, 10) == 0
    assert segment_ranges(7, 3) == [range(0, 3), range(3, 5), range(5, 7)]


def test_same_modules_same_keys_and_plain_without_grad():
    plain, recomputed = make(K=2), make(K=2, recompute=2)
    assert all(isinstance(p, RecomputedSequential) for p in recomputed.pieces)
    assert list(plain.state_dict()) == list(recomputed.state_dict())
    assert recomputed.pieces[0][0] is recomputed._backbone.blocks[0]  # shared with the backbone, not copied
    recomputed.load_state_dict(plain.state_dict())
    x, _ = batch()
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), recomputed.eval()(x))
    # A slice keeps its segments (HPFF runs piece 0 without its stem).
    piece = recomputed.pieces[0]
    assert isinstance(piece[1:], RecomputedSequential) and piece[1:].segments == min(2, len(piece) - 1)


@pytest.mark.parametrize("method, K", [("e2e", 1), ("greedy", 3), ("infopro-contrast", 4), ("dgl", 2), ("hpff", 3)])
@pytest.mark.parametrize("recompute, aux", [(2, False), ("auto", False), (3, True)])
def test_training_is_bitwise_the_same(method, K, recompute, aux):
    """Weights, BatchNorm running statistics and step counts after 3 optimiser steps, bitwise."""
    reference = train(make(method, K))
    recomputed = train(make(method, K, recompute=recompute, recompute_aux=aux))
    assert any(p.segments > 1 or p.checkpoint_last for p in recomputed.pieces)
    assert_bitwise_equal(reference, recomputed)
    # The recomputation did not move the running statistics a second time (HPFF's cascade runs pieces twice).
    counts = {int(b) for name, b in recomputed.state_dict().items() if name.endswith("num_batches_tracked")}
    assert counts == ({3, 6, 9} if method == "hpff" else {3})


def test_dropout_draws_are_replayed():
    def backbone():
        def block(c_in, c_out):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.Dropout(0.5))
        blocks = [block(3, 8), block(8, 8), block(8, 8), block(8, 8)]
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
        return SequentialBackbone(blocks, head)

    def learner(**kwargs):
        torch.manual_seed(0)
        return LocalLearner(backbone(), 2, "greedy", cuts=[1], input_shape=(3, 8, 8), **kwargs)

    torch.manual_seed(5)
    reference = train(learner(), shape=(3, 8, 8))
    torch.manual_seed(5)
    recomputed = train(learner(recompute=2), shape=(3, 8, 8))
    assert_bitwise_equal(reference, recomputed)


def test_segmentation_learner_is_bitwise_the_same_and_the_tap_keeps_no_recomputation():
    # deeplabv3_resnet18: blocks 0 stem, 1-2 layer1, 3-4 layer2, 5-6 layer3 (6: the FCN tap), 7-8 layer4.
    def learner(**kwargs):
        torch.manual_seed(0)
        return LocalLearner(build_backbone("deeplabv3_resnet18", 3), 2, "infopro-softmax", cuts=[5],
                            input_shape=(3, 32, 32), num_classes=3, task=build_task("segment"), **kwargs)

    def masks(step):
        g = torch.Generator().manual_seed(step)
        mask = torch.randint(0, 3, (2, 32, 32), generator=g)
        mask[:, :10] = 255
        return torch.randn(2, 3, 32, 32, generator=g), mask

    reference = train(learner(), steps=2, make_batch=masks)
    recomputed = train(learner(recompute=2), steps=2, make_batch=masks)
    assert_bitwise_equal(reference, recomputed)
    # The tap block (6) is in the last piece's first, checkpointed segment: its recomputation fires the hook.
    piece, objective = recomputed.pieces[1], recomputed.aux[1]
    assert piece.ranges()[0] == range(0, 2) and piece[0] is recomputed._backbone.blocks[6]
    x, mask = masks(0)
    local_step(piece, objective, recomputed.pieces[0](x).detach(), mask)
    assert objective._tap.output is None


@pytest.mark.parametrize("method", ["greedy", "infopro-contrast"])
def test_gradient_isolation_with_recomputation(method):
    """Changing pieces k+1..K changes no gradient of pieces 1..k (bitwise), recomputed pieces too."""
    x, y = batch()
    learner = make(method, K=3, recompute=2, recompute_aux=True)
    for k in range(1, learner.K):
        model = copy.deepcopy(learner)
        model.train_step(x, y)
        before = [p.grad.clone() for m in [*model.pieces[:k], *model.aux[:k]] for p in m.parameters()]
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for p in [p for m in [*model.pieces[k:], *model.aux[k:]] for p in m.parameters()]:
                p.add_(torch.randn_like(p))
        model.train_step(x, y)
        after = [p.grad for m in [*model.pieces[:k], *model.aux[:k]] for p in m.parameters()]
        assert all(torch.equal(a, b) for a, b in zip(before, after)), f"piece <= {k} changed"


def test_bad_settings_are_one_line():
    with pytest.raises(InfoProError, match="recompute_aux needs recompute"):
        make(K=2, recompute_aux=True)
    with pytest.raises(InfoProError, match="recompute must be"):
        make(K=2, recompute="sometimes")


def synthetic_profile(sizes):
    """Block b saves only its input, of sizes[b] bytes (storage id b); the objectives save nothing."""
    return MemoryProfile(blocks=[{b: s} for b, s in enumerate(sizes)],
                         objectives={("local", b): {} for b in range(len(sizes))},
                         inputs=[(b, s) for b, s in enumerate(sizes)])


def test_recomputed_piece_cost_by_hand():
    profile = synthetic_profile([4, 4, 4, 4, 1])
    profile.objectives[("local", 3)] = {99: 6}  # an objective (aux nets) on block 3's output saving 6
    # No recomputation: everything the piece and its objective save.
    assert piece_cost(profile, 0, 3, "local") == (16, 6)
    # 2 segments [0, 1] [2, 3]: when backward starts, segment 0's input (4) + the plain segment 1 (8) + the
    # objective (6) = 18; while segment 0 is recomputed, its 8 (the objective's are freed by then).
    assert piece_cost(profile, 0, 3, "local", lambda m: 2) == (12, 6)
    # One segment, not checkpointed: the plain piece.
    assert piece_cost(profile, 0, 3, "local", lambda m: 1) == (16, 6)
    # Every segment checkpointed (recompute_aux): the kept inputs 4 + 4 and the objective 6 = 14 when backward
    # starts, then 4 + 8 = 12 while segment 1 is recomputed: the objective no longer meets a segment.
    assert piece_cost(profile, 0, 3, "local", lambda m: 2, checkpoint_last=True) == (8, 6)
    # 4 segments: inputs 0-2 kept (12) + the plain block 3 (4) + 6: more segments keep more boundaries.
    assert piece_cost(profile, 0, 3, "local", lambda m: 4) == (16, 6)


def test_balanced_cuts_move_with_recomputation_by_hand():
    """Blocks saving 1, 3, 3, 2, then the head 1; K=2.

    Without recomputation: cut after block 1 -> pieces 1+3=4 and 3+2+1=6 (max 6; after block 2: 7 and 3).
    With 2 segments a piece: cut after block 1 -> piece 2-4 keeps max(3 + 1, 3 + 2) = 5; cut after block 2 ->
    piece 0-2 keeps max(1 + 3, 1 + 3) = 4 and piece 3-4 max(2 + 1, 2) = 3: max 4, the better cut.
    """
    profile = synthetic_profile([1, 3, 3, 2, 1])
    n, K = 4, 2

    def cuts(segments):
        return linear_partition(lambda k, s, e: sum(piece_cost(profile, s, n if k == K - 1 else e, "local", segments)),
                                n, K)

    assert cuts(None) == [1]
    assert cuts(lambda m: min(2, m)) == [2]


def test_balanced_cuts_of_a_learner_follow_recomputation():
    plain = make("infopro-contrast", K=3, cuts="balanced", profile_batch_size=4)
    recomputed = make("infopro-contrast", K=3, cuts="balanced", profile_batch_size=4, recompute=2)
    assert plain.cuts == [1, 3] and recomputed.cuts == [2, 5]
    # Each set of cuts is the better one under its own cost.
    assert max(map(sum, recomputed.piece_memory(4))) < max(
        map(sum, make("infopro-contrast", K=3, cuts=plain.cuts, recompute=2).piece_memory(4)))


@pytest.mark.parametrize("method, K, recompute, aux", [("infopro-contrast", 2, 2, False),
                                                       ("infopro-contrast", 2, 3, True), ("e2e", 1, 4, False)])
def test_model_of_the_recomputed_peak_against_every_live_tensor(method, K, recompute, aux):
    """The profile's peak for recomputed pieces vs every tensor alive in the step (`LiveTensorMeter`; saved-tensor
    hooks do not see inside torch's checkpoint). Tolerance: the live count also holds the gradients flowing
    through a block, its input's and its output's, and one temporary: at most 3 of the largest block output."""
    B = 16
    learner = make(method, K, arch="resnet32", recompute=recompute, recompute_aux=aux, profile_batch_size=B)
    plain = make(method, K, arch="resnet32", profile_batch_size=B)
    x, y = batch(B)
    learner.train_step(x, y)  # the parameters' gradients exist before the measured step, as in training
    predicted = max(map(sum, learner.piece_memory(B)))
    existing = [*learner.state_dict().values(), *[p.grad for p in learner.parameters()], x, y]
    with LiveTensorMeter(exclude=existing) as live:
        learner.train_step(x, y)
    largest_output = B * 16 * 32 * 32 * 4  # resnet32's first stage: 16 channels at 32x32, float32
    assert predicted <= live.peak_bytes <= predicted + 3 * largest_output
    assert predicted < 0.6 * max(map(sum, plain.piece_memory(B)))


def test_bench_rows_with_recomputation(tmp_path):
    out = tmp_path / "bench"
    code = main(["bench", "--arch", "resnet20", "--batch-size", "4", "--input-shape", "3", "16", "16", "--K", "2", "--methods", "checkpoint,greedy",
                 "--cuts", "even", "--recompute", "off", "2", "auto+aux", "--checkpoint-segments", "3",
                 "--steps", "1", "--device", "cpu", "--out", str(out), "--quiet"])
    assert code == 0
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert [(r["method"], r["K"], r["recompute"]) for r in rows] == [
        ("checkpoint", 3, "off"), ("greedy", 2, "off"), ("greedy", 2, "2"), ("greedy", 2, "auto+aux")]
    assert [r["segments"] for r in rows] == [None, None, [2, 2], [2, 2]]  # auto: round(sqrt(5)), round(sqrt(6))
    assert rows[2]["flops"] > rows[1]["flops"]  # recomputation costs FLOPs
    assert "greedy + recompute 2 [2, 2]" in (out / "bench.md").read_text()
    assert main(["bench", "--recompute", "off+aux", "--out", str(tmp_path / "x")]) == 2


def test_train_cli_refuses_recompute_aux_alone(tmp_path, capsys):
    assert main(["train", "--recompute-aux", "--out", str(tmp_path / "r")]) == 2
    assert "--recompute-aux needs --recompute" in capsys.readouterr().err
    assert main(["train", "--recompute", "some", "--out", str(tmp_path / "r")]) == 2
    assert "--recompute takes a number of segments" in capsys.readouterr().err

import itertools
import json
import random

import pytest
import torch

from infopro import InfoProError, LocalLearner, SavedActivationMeter, build_backbone
from infopro.bench.live_memory import LiveTensorMeter
from infopro.cli import main
from infopro.local import resolve_cuts
from infopro.local.balance import linear_partition, piece_memory, profile_memory


def measured_peak(learner, batch=8):
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    with SavedActivationMeter(exclude=learner.parameters()) as meter:
        learner.train_step(x, y)
    return meter.peak_bytes


@pytest.mark.parametrize("method, K", [("infopro-contrast", 4), ("greedy", 3), ("infopro-softmax", 5), ("dgl", 2)])
def test_profile_predicts_the_measured_peak_exactly(method, K):
    rng = random.Random(K)
    for _ in range(2):
        torch.manual_seed(0)
        backbone = build_backbone("resnet20")
        cuts = sorted(rng.sample(range(len(backbone.blocks) - 1), K - 1))
        learner = LocalLearner(backbone, K, method, cuts=cuts)
        predicted = learner.piece_memory(batch_size=8)
        assert len(predicted) == K
        assert max(sum(p) for p in predicted) == measured_peak(learner)


def test_linear_partition_matches_brute_force():
    rng = random.Random(0)
    weights = [rng.randint(1, 50) for _ in range(9)]

    def cost(k, start, end):
        return sum(weights[start:end + 1]) + 7 * (k == 0)  # piece-dependent, like the aux nets

    for K in (1, 2, 3, 5):
        cuts = linear_partition(cost, len(weights), K)
        best = min(
            max(cost(k, s + 1, e) for k, (s, e) in enumerate(zip([-1, *c], [*c, len(weights) - 1])))
            for c in itertools.combinations(range(len(weights) - 1), K - 1)
        )
        bounds = [-1, *cuts, len(weights) - 1]
        assert max(cost(k, s + 1, e) for k, (s, e) in enumerate(zip(bounds, bounds[1:]))) == best


@pytest.mark.parametrize("arch, method, K", [("resnet20", "infopro-contrast", 3), ("resnet32", "greedy", 4),
                                             ("resnet20", "infopro-softmax", 5)])
def test_balanced_cuts_are_valid_and_never_worse_than_even(arch, method, K):
    torch.manual_seed(0)
    balanced = LocalLearner(build_backbone(arch), K, method, cuts="balanced", profile_batch_size=8)
    torch.manual_seed(0)
    even = LocalLearner(build_backbone(arch), K, method, cuts="even")
    assert len(balanced.cuts) == K - 1 and balanced.cuts == sorted(set(balanced.cuts))
    assert measured_peak(balanced) <= measured_peak(even)


def test_balanced_cuts_resnet110_no_worse_than_the_papers_hand_cuts():
    backbone = build_backbone("resnet110")
    learner = LocalLearner(backbone, 3, "infopro-contrast", cuts="balanced", profile_batch_size=2)
    context = learner._cut_context
    profile = profile_memory(backbone.blocks, backbone.head, 3, context)
    kinds = [context.objective_kind(k) for k in range(3)]
    paper = resolve_cuts("paper-balanced", backbone, 3)
    assert max(map(sum, piece_memory(profile, learner.cuts, kinds))) <= max(map(sum, piece_memory(profile, paper, kinds)))


def test_balanced_profiling_leaves_the_model_and_rng_alone():
    torch.manual_seed(0)
    balanced = LocalLearner(build_backbone("resnet20"), 3, "infopro-contrast", cuts="balanced", profile_batch_size=4)
    torch.manual_seed(0)
    explicit = LocalLearner(build_backbone("resnet20"), 3, "infopro-contrast", cuts=balanced.cuts)
    for (name, a), b in zip(balanced.state_dict().items(), explicit.state_dict().values()):
        assert torch.equal(a, b), name  # same init, BatchNorm statistics untouched


def test_balanced_needs_the_learner():
    with pytest.raises(InfoProError, match="resolved inside LocalLearner"):
        resolve_cuts("balanced", build_backbone("resnet20"), 3)


def test_live_meter_counts_allocations_by_hand():
    a = torch.randn(1000)
    with LiveTensorMeter(exclude=[a]) as meter:
        b = a * 2  # 4000 bytes
        c = b.view(10, 100)  # a view: no new storage
        b.add_(1)  # in place: no new storage
        a.mul_(3)  # in place on an excluded tensor: not counted
        d = b + c.view(-1)  # 4000 more
        assert meter.current_bytes == 8000
        del b, c, d
        assert meter.current_bytes == 0
    assert meter.peak_bytes == 8000


def test_bench_cli_writes_json_table_and_plot(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--arch", "resnet20", "--batch-size", "8", "--K", "4",
                 "--methods", "e2e,checkpoint,greedy,infopro-contrast", "--cuts", "paper,balanced",
                 "--steps", "1", "--device", "cpu", "--out", str(out), "--quiet"])
    assert code == 0
    report = json.loads((out / "bench.json").read_text())
    rows = report["rows"]
    assert [(r["method"], r["K"], r["cuts_preset"]) for r in rows] == [
        ("e2e", 1, "-"), ("checkpoint", 4, "4 segments"), ("greedy", 4, "balanced"), ("infopro-contrast", 4, "balanced")]
    for r in rows:
        for key in ("method", "K", "cuts", "peak_bytes", "flops", "step_seconds", "memory_ratio"):
            assert key in r, key
        assert r["peak_bytes"] > 0 and r["flops"] > 0 and r["step_seconds"] > 0
        assert r["step_seconds_min"] <= r["step_seconds"] <= r["step_seconds_max"]
        assert [r["step_seconds_min"], r["step_seconds_max"]] == [min(r["step_seconds_all"]), max(r["step_seconds_all"])]
    assert "--steps 5 or more" in report["warning"] and "warning: only 1 timed step" in capsys.readouterr().err
    # resnet20 has no paper cuts: skipped with a note, not an error.
    assert any("paper" in s for s in report["skipped"])
    e2e = next(r for r in rows if r["method"] == "e2e")
    local = [r for r in rows if r["method"] == "greedy" and r["K"] == 4]
    assert all(r["peak_bytes"] < e2e["peak_bytes"] for r in local)
    ckpt = next(r for r in rows if r["method"] == "checkpoint" and r["K"] == 4)
    assert ckpt["peak_bytes"] < e2e["peak_bytes"] and ckpt["flops"] > e2e["flops"]  # recomputation costs FLOPs
    assert (out / "bench.md").read_text().count("\n| ") == len(rows) + 1
    assert "s/step median (min-max)" in (out / "bench.md").read_text()
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_cli_bad_input(tmp_path, capsys):
    assert main(["bench", "--methods", "e2e,sgd", "--out", str(tmp_path)]) == 2
    assert "unknown method 'sgd'" in capsys.readouterr().err
    assert main(["bench", "--cuts", "clever", "--out", str(tmp_path)]) == 2
    assert "unknown preset 'clever'" in capsys.readouterr().err
    assert main(["bench", "--batch-size", "1", "--out", str(tmp_path)]) == 2
    assert "--batch-size must be >= 2" in capsys.readouterr().err


def test_chunked_decoder_gives_the_same_losses_and_gradients():
    def step(chunk):
        torch.manual_seed(0)
        learner = LocalLearner(build_backbone("resnet20"), 4, "infopro-contrast", cuts=[2, 5, 8],
                               decoder_chunk_channels=chunk)
        x, y = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 10
        losses = learner.train_step(x, y)["losses"]
        return losses, [p.grad for p in learner.parameters()], learner

    plain_losses, plain_grads, _ = step(0)
    chunked_losses, chunked_grads, learner = step(8)  # the 32- and 64-channel cuts split into 4 and 8 chunks
    assert chunked_losses == pytest.approx(plain_losses, rel=1e-6)
    for a, b in zip(plain_grads, chunked_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # The chunked decoder saves only its low-resolution input for backward (plus conv1's output onwards).
    assert measured_peak(learner) <= measured_peak(step(0)[2])

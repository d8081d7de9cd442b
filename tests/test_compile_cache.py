"""`--compile` measured: compile time apart from step time, and a compile cache in the run directory that
`--resume` reuses.

The default tests compile with the "aot_eager" backend (Dynamo capture and AOTAutograd's forward/backward
split, as inductor, without its C++ code generation). Inductor itself, whose caches the run directory keeps,
takes minutes per network on this project's shared 2-core CPU: those tests run only with INFOPRO_SLOW_TESTS=1.
"""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import infopro
from infopro.cli import main
from infopro.train.compile_cache import CACHE_ENV, COMPILE_CACHE_NAME, CompileClock, compile_cache
from conftest import FAST

SRC = Path(infopro.__file__).resolve().parents[1]
SLOW = os.environ.get("INFOPRO_SLOW_TESTS") == "1"
slow = pytest.mark.skipif(not SLOW, reason="inductor compiles take minutes on a shared 2-core CPU; "
                                          "run with INFOPRO_SLOW_TESTS=1")
BACKENDS = ["aot_eager", pytest.param("inductor", marks=slow)]


@pytest.fixture(scope="module", autouse=True)
def no_compiled_garbage_afterwards():
    yield
    import torch._dynamo

    torch._dynamo.reset()
    gc.collect()


def tiny_learner(K: int = 2) -> infopro.LocalLearner:
    """Three conv blocks and a linear head on 16x16 images: a net that compiles in seconds."""
    def block(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())

    torch.manual_seed(0)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    backbone = infopro.SequentialBackbone([block(3, 8), block(8, 8), block(8, 16)], head)
    return infopro.LocalLearner(backbone, K, "infopro-softmax", cuts=list(range(K - 1)), input_shape=(3, 16, 16))


def sgd(learner):
    return torch.optim.SGD(learner.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_pieces_train_as_eager_for_two_steps(backend):
    """Two SGD steps: the same losses and weights as eager (float tolerance), and the first piece's
    gradients come from its own loss alone (zeroing the last loss leaves them as they are)."""
    eager, compiled = tiny_learner(), tiny_learner()
    compiled.compile_pieces(backend=backend)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 3, 16, 16, generator=gen), torch.randint(0, 10, (8,), generator=gen)) for _ in range(2)]
    for learner in (eager, compiled):
        optimizer = sgd(learner)
        learner.losses_seen = []
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            learner.losses_seen.append(learner.train_step(x, y)["losses"])
            optimizer.step()
    for a, b in zip(eager.losses_seen, compiled.losses_seen):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5)
    assert eager.losses_seen[0] != eager.losses_seen[1]  # the second step saw the updated weights
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), name  # after two steps at lr 0.1

    x, y = batches[0]
    compiled.zero_grad(set_to_none=True)
    compiled.train_step(x, y)
    first = [p.grad.clone() for p in compiled.pieces[0].parameters()]
    handle = compiled.aux[-1].register_forward_hook(lambda module, args, loss: loss * 0)
    try:
        compiled.zero_grad(set_to_none=True)
        compiled.train_step(x, y)
    finally:
        handle.remove()
    assert all(torch.allclose(a, p.grad, rtol=1e-5, atol=1e-7) for a, p in zip(first, compiled.pieces[0].parameters()))
    assert all(p.grad is None or not p.grad.any() for p in compiled.pieces[-1].parameters())


def test_clock_times_each_piece_of_the_first_two_steps():
    learner = tiny_learner(K=3)
    clock = CompileClock(learner, torch.device("cpu"))
    clock.start()
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    for _ in range(3):
        clock.before_step()
        learner.train_step(x, y)
    assert len(clock.steps) == 2 and all(len(s) == 3 and min(s) > 0 for s in clock.steps)
    assert learner.piece_done is None  # unhooked after the second step
    record = clock.record()
    assert record["compile_seconds"] == pytest.approx(sum(record["compile_seconds_per_piece"]))
    assert all(s >= 0 for s in record["compile_seconds_per_piece"])
    assert record["compile_cache_hits"] == record["compile_cache_misses"] == 0  # nothing compiled


def test_cache_directory_is_set_while_inside_and_restored(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, "/somewhere/else")
    with compile_cache(tmp_path / "run") as directory:
        assert directory == tmp_path / "run" / COMPILE_CACHE_NAME and directory.is_dir()
        assert os.environ[CACHE_ENV] == str(directory)
    assert os.environ[CACHE_ENV] == "/somewhere/else"
    monkeypatch.delenv(CACHE_ENV)
    with compile_cache(tmp_path / "run"):
        pass
    assert CACHE_ENV not in os.environ


def test_compiled_run_reports_compile_time_and_keeps_its_cache_in_the_run(tmp_path, monkeypatch, capsys):
    """`infopro train --compile`: RUN/compile_cache is inductor's cache while the run trains (and --resume's),
    and the first epoch of each process records compile_seconds, printed once. (The pieces are left
    uncompiled here: what is tested is the loop's wiring; the slow test below compiles.)"""
    seen = []

    def compile_pieces(self, backend="inductor", mode=None):
        seen.append(os.environ.get(CACHE_ENV))

    import infopro.train.loop as loop

    real_epoch = loop.train_one_epoch

    def train_one_epoch(*args, **kwargs):
        seen.append(os.environ.get(CACHE_ENV))
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(infopro.LocalLearner, "compile_pieces", compile_pieces)
    monkeypatch.setattr(loop, "train_one_epoch", train_one_epoch)
    monkeypatch.delenv(CACHE_ENV, raising=False)
    flags = [f for f in FAST if f != "--quiet"]
    run = tmp_path / "run"
    assert main(["train", *flags, "--epochs", "1", "--compile", "--out", str(run)]) == 0
    assert main(["train", *flags, "--epochs", "2", "--compile", "--resume", str(run)]) == 0
    cache = run / COMPILE_CACHE_NAME
    assert cache.is_dir()
    assert seen[1] == seen[3] == str(cache)  # each process's training steps used the run's cache
    assert CACHE_ENV not in os.environ  # restored after the run
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for record in records:  # each process compiled in its first epoch
        assert len(record["compile_seconds_per_piece"]) == 2 and record["compile_seconds"] >= 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("compile: ")]
    assert len(lines) == 2 and all(f"cache {cache}: " in line for line in lines), lines


@slow
def test_resumed_run_reuses_the_inductor_cache(tmp_path):
    """Inductor: the resumed process finds the first one's compiled graphs in RUN/compile_cache (cache hits,
    no misses), so its compile takes less time."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INFOPRO_CACHE": str(tmp_path / "data-cache"),
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop(CACHE_ENV, None)
    flags = [f for f in FAST if f not in ("--quiet",)]
    base = [sys.executable, "-m", "infopro", "train", *flags, "--compile", "--out", str(run)]
    for extra in (["--epochs", "1"], ["--epochs", "2", "--resume", str(run)]):
        done = subprocess.run(base + extra, env=env, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stderr[-2000:]
    fresh, resumed = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert fresh["compile_cache_misses"] > 0
    assert resumed["compile_cache_hits"] > 0 and resumed["compile_cache_misses"] == 0
    assert resumed["compile_seconds"] < fresh["compile_seconds"]

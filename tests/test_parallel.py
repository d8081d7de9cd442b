"""Pieces-parallel and data-parallel training with 2 gloo processes on the CPU.

The processes are started either by torchrun (`python -m torch.distributed.run`), as a user
would, or directly with torchrun's environment variables (RANK, WORLD_SIZE, MASTER_ADDR, ...),
so that a killed rank is noticed by the other process itself, not by torchrun's agent.
"""

import argparse
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import infopro
from infopro.cli import get_args_parser, main
from infopro.data import DataOptions, make_loader, open_data
from infopro.train import load_checkpoint
from infopro.train.args import check_args
from infopro.train.loop import build_learner, make_optimizer
from infopro.train.parts import evaluate_metrics
from conftest import FAST

SRC = Path(infopro.__file__).resolve().parents[1]
# A warm-up over both epochs, so the learning rate differs per epoch: each trainer must follow the schedule.
WARMUP = ["--warmup-epochs", "2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return {**env, **extra}


def torchrun(*flags, nproc: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "infopro", "train", *map(str, flags)]
    # Generous: several processes share two loaded cores.
    return subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=60 + 60 * nproc, check=False)


def start_ranks(*flags, world: int = 2, check_every: int | None = None) -> list[subprocess.Popen]:
    """The processes torchrun would start, without its agent (which would itself stop the survivors);
    `check_every` replaces `infopro.finite.CHECK_EVERY` in them."""
    port = str(free_port())
    program = ["-m", "infopro"] if check_every is None else \
        ["-c", f"import sys, infopro.finite, infopro.cli; infopro.finite.CHECK_EVERY = {check_every}; "
               "sys.exit(infopro.cli.main(sys.argv[1:]))"]
    return [subprocess.Popen([sys.executable, *program, "train", *map(str, flags)],
                             env=child_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world),
                                           MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for r in range(world)]


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.allclose(value.float(), b[key].float(), rtol=1e-5, atol=1e-7), key


@contextlib.contextmanager
def one_thread():
    """Compute as the ranks do (OMP_NUM_THREADS=1): a multi-threaded reduction changes the last bits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory):
    """The reference: the same run in one process."""
    out = tmp_path_factory.mktemp("single") / "run"
    with one_thread():
        assert main(["train", *FAST, *WARMUP, "--out", str(out)]) == 0
    return out


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_synchronous_pieces_parallel_gives_the_single_process_weights(tmp_path, single_process_run, capsys):
    out = tmp_path / "pieces"
    done = torchrun(*[f for f in FAST if f != "--quiet"], *WARMUP, "--parallel", "pieces", "--sync-pieces", "--out", out)
    assert done.returncode == 0, done.stderr
    reference, merged = load_checkpoint(single_process_run / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    # One checkpoint in the single-process format: every piece's weights and optimiser state merged.
    assert reference.keys() == merged.keys() and merged["epoch"] == 2
    assert_same_state(reference["model"], merged["model"])
    assert reference["optimizer"]["param_groups"] == merged["optimizer"]["param_groups"]
    assert reference["optimizer"]["state"].keys() == merged["optimizer"]["state"].keys()
    for i, s in reference["optimizer"]["state"].items():
        assert torch.allclose(s["momentum_buffer"], merged["optimizer"]["state"][i]["momentum_buffer"], atol=1e-7)
    assert reference["scheduler"] == merged["scheduler"]
    metrics = read_metrics(out)
    assert [r["epoch"] for r in metrics] == [1, 2] and len(metrics[0]["train_losses"]) == 2
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2
    # The per-epoch record is the single-process one (gathered from both ranks), plus each rank's peak memory.
    for record, single in zip(metrics, read_metrics(single_process_run)):
        assert record.keys() - single.keys() == {"rank_peak_memory_bytes"} and single.keys() <= record.keys()
        assert record["train_losses"] == pytest.approx(single["train_losses"], rel=1e-5)
        assert [t.keys() for t in record["train_piece_terms"]] == [{"recon", "task"}, {"task"}]
        for terms, reference in zip(record["train_piece_terms"], single["train_piece_terms"]):
            assert terms == pytest.approx(reference, rel=1e-5)
        assert record["test_loss"] == pytest.approx(single["test_loss"], rel=1e-5)
        assert record["test_accuracy"] == single["test_accuracy"] and record["eval_seconds"] > 0
        assert record["lr"] == single["lr"]
    assert metrics[0]["lr"] == 0.01 and metrics[1]["lr"] > 0.01  # the warm-up's first epoch, then the blend
    # Rank 0 prints progress lines (stdout is not a terminal) and keeps train.log, metrics.csv and curves.png.
    assert "  epoch 1/2  step 2/4 (50%)  piece 1 loss " in done.stdout, done.stdout
    assert "  epoch 1/2  step 2/4 (50%)" in (out / "train.log").read_text()
    assert "piece_1_recon" in (out / "metrics.csv").read_text().splitlines()[0]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The merged checkpoint evaluates in one process to the accuracy the pipelined evaluation measured.
    capsys.readouterr()
    with one_thread():
        assert main(["train", *FAST, "--out", str(out), "--test-only"]) == 0
    assert f"test accuracy {100 * metrics[-1]['test_accuracy']:.2f}%" in capsys.readouterr().out


def test_recomputed_pieces_parallel_gives_the_single_process_weights(tmp_path, single_process_run):
    """--parallel pieces runs the learner's own (recomputed) pieces: the run is the plain single-process one."""
    out = tmp_path / "recomputed"
    done = torchrun(*FAST, *WARMUP, "--parallel", "pieces", "--sync-pieces", "--recompute", "2", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "recompute: 2" in (out / "config.yaml").read_text()
    reference, merged = load_checkpoint(single_process_run / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    assert_same_state(reference["model"], merged["model"])


def test_adamw_decay_groups_merge_into_the_single_process_checkpoint(tmp_path):
    """--optimizer adamw keeps norms, biases, ... in a second parameter group: each rank's two groups merge
    into the single-process optimiser's, and the run resumes from them in either mode."""
    flags = [*FAST, "--optimizer", "adamw", "--weight-decay", "0.05", "--epochs", "1"]
    single = tmp_path / "single"
    with one_thread():
        assert main(["train", *flags, "--out", str(single)]) == 0
    out = tmp_path / "pieces"
    done = torchrun(*flags, "--parallel", "pieces", "--sync-pieces", "--out", out)
    assert done.returncode == 0, done.stderr
    reference, merged = load_checkpoint(single / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    assert_same_state(reference["model"], merged["model"])
    assert reference["optimizer"]["param_groups"] == merged["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in merged["optimizer"]["param_groups"]] == [0.05, 0.0]
    for i, s in reference["optimizer"]["state"].items():
        assert torch.allclose(s["exp_avg_sq"], merged["optimizer"]["state"][i]["exp_avg_sq"], rtol=1e-4, atol=1e-10)
    done = torchrun(*flags[:-2], "--epochs", "2", "--parallel", "pieces", "--out", out, "--resume")
    assert done.returncode == 0, done.stderr


def test_killed_rank_stops_the_other_which_names_it_and_the_run_resumes(tmp_path, single_process_run):
    out = tmp_path / "run"
    ranks = start_ranks(*FAST, *WARMUP, "--parallel", "pieces", "--out", out)
    deadline = time.monotonic() + 60
    while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    ranks[1].kill()  # rank 0 is in epoch 2 or about to be: it sends to rank 1 next
    start = time.monotonic()
    _, err = ranks[0].communicate(timeout=60)
    assert time.monotonic() - start < 60
    assert ranks[0].returncode not in (0, None)
    assert "lost rank 1 (piece 2 of 2)" in err and "Traceback" not in err, err
    ranks[1].wait()
    # The epoch-1 checkpoint continues pipelined and ends on the weights of the uninterrupted run.
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    done = torchrun(*FAST, *WARMUP, "--parallel", "pieces", "--out", out, "--resume")
    assert done.returncode == 0, done.stderr
    assert_same_state(load_checkpoint(single_process_run / "checkpoint.pt")["model"],
                      load_checkpoint(out / "checkpoint.pt")["model"])


def test_a_silent_rank_is_given_up_after_the_timeout(tmp_path):
    out = tmp_path / "run"
    ranks = start_ranks(*FAST, "--parallel", "pieces", "--micro-batches", "2", "--dist-timeout", "3", "--out", out)
    try:
        deadline = time.monotonic() + 60
        while not (out / "config.yaml").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(ranks[0].pid, signal.SIGSTOP)  # alive but silent: no connection closes
        start = time.monotonic()
        _, err = ranks[1].communicate(timeout=60)
        assert time.monotonic() - start < 30
        assert ranks[1].returncode == 2 and "lost rank 0 (piece 1 of 2)" in err and "Timed out" in err, err
    finally:
        ranks[0].kill()
        ranks[0].wait()


@pytest.mark.parametrize("parallel, check_every", [(["pieces", "--micro-batches", "2"], 1), (["data"], 50)])
def test_diverging_loss_stops_every_rank_with_one_line_naming_the_piece(tmp_path, parallel, check_every):
    """--lr 1e30: the loss flags of both pieces are combined over the ranks at the same check points, so
    both ranks stop there: rank 0 with the single-process line, rank 1 quietly (no lost peer, no hang),
    and nothing is checkpointed."""
    out = tmp_path / "run"
    ranks = start_ranks(*FAST, "--lr", "1e30", "--epochs", "1", "--parallel", *parallel, "--dist-timeout", "30",
                        "--out", out, check_every=check_every)  # checked at step 1 (pipelined), at the epoch's end
    errs = [rank.communicate(timeout=120)[1] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [2, 2], errs
    line = errs[0].strip().splitlines()[-1]
    where = "by step 2 of epoch 1" if check_every == 1 else "during epoch 1"  # step 1 is still finite
    assert f"local loss became nan {where}; no checkpoint was written yet" in line, errs
    assert line.split("piece ")[1][0] in "12" and errs[1].strip() == "", errs
    assert not (out / "checkpoint.pt").exists() and not (out / "summary.json").exists()


def test_pipelined_pieces_parallel_learns(tmp_path):
    out = tmp_path / "run"
    done = torchrun("--arch", "resnet20", "--K", "2", "--cuts", "even", "--method", "infopro-softmax",
                    "--train-subset", "1000", "--test-subset", "200", "--batch-size", "50", "--lr", "0.05",
                    "--epochs", "3", "--device", "cpu", "--quiet", "--micro-batches", "2", "--parallel", "pieces",
                    "--out", out)
    assert done.returncode == 0, done.stderr
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_losses"][-1] < metrics[0]["train_losses"][-1]
    assert json.loads((out / "summary.json").read_text())["best_test_error"] < 0.8  # chance is 0.9


DATA_FLAGS = [*FAST, "--method", "greedy", "--epochs", "1", "--workers", "0"]


@functools.lru_cache(maxsize=None)
def two_slice_reference(batch_size: int, subset: int, data_path: str):
    """One process: a learner per data slice of each batch, gradients averaged by each slice's share of
    the batch (BatchNorm sees each slice alone, as on the ranks). Returns (learner, optimiser) of slice 0.
    On the stream path each rank decoded only its own slice (a sharded loader); here one loader gives
    whole batches."""
    argv = ["train", *DATA_FLAGS, "--batch-size", str(batch_size), "--train-subset", str(subset),
            "--data-path", data_path]
    args = get_args_parser(argv).parse_args(argv)
    check_args(args)
    data = open_data("cifar10", None, DataOptions(train_subset=subset, path=data_path, progress=False))
    loader = make_loader(data, data.train, "cpu", batch_size, train=True, seed=0, workers=0)
    learners = [build_learner(args, data.image_shape, data.num_classes, data.mean, data.std, torch.device("cpu"))
                for _ in range(2)]
    optimizers = [make_optimizer(learner.parameters(), args) for learner in learners]
    with one_thread():
        for x, y in loader:
            x = x.contiguous(memory_format=torch.channels_last)  # as the ranks do by default
            for learner, optimizer, xs, ys in zip(learners, optimizers, x.tensor_split(2), y.tensor_split(2)):
                optimizer.zero_grad()
                learner.train_step(xs, ys)
            for params in zip(*(learner.parameters() for learner in learners)):
                average = sum(p.grad * (len(xs) / len(y)) for p, xs in zip(params, x.tensor_split(2)))
                for p in params:
                    p.grad = average.clone()
            for optimizer in optimizers:
                optimizer.step()
    return learners[0], optimizers[0]


# Even slices over 4 steps; unequal slices (26 and 25 images, weighed by their shares) over one step: the
# rounding of a share differs from the reference's in the last bit, and BatchNorm on 25 images amplifies
# such differences some tenfold per step, so one step is what float tolerance can check.
@pytest.mark.parametrize("parallel, nproc, batch_size, subset, data_path",
                         [("data", 2, 50, 200, "memory"), ("data", 2, 50, 200, "stream"),
                          ("pieces,data", 4, 50, 200, "memory"), ("data", 2, 51, 51, "memory")])
def test_data_parallel_averages_the_ranks_gradients(tmp_path, parallel, nproc, batch_size, subset, data_path):
    """DDP per (piece, objective) pair on 2 slices (`data`: 2 processes; `pieces,data`: the 2 x 2 mesh,
    each piece's gradients reduced over its own row) gives the weights of the one-process reference, and
    the checkpoint is in the one-process format."""
    out = tmp_path / "run"
    done = torchrun(*DATA_FLAGS, "--batch-size", batch_size, "--train-subset", subset, "--data-path", data_path,
                    "--parallel", parallel, "--out", out, nproc=nproc)
    assert done.returncode == 0, done.stderr
    learner, optimizer = two_slice_reference(batch_size, subset, data_path)
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved["model"].keys() == learner.state_dict().keys()
    assert_same_state(dict(learner.named_parameters()), {k: saved["model"][k] for k, _ in learner.named_parameters()})
    reference = optimizer.state_dict()
    without_lr = lambda groups: [{k: v for k, v in g.items() if k not in ("lr", "initial_lr")} for g in groups]
    assert without_lr(saved["optimizer"]["param_groups"]) == without_lr(reference["param_groups"])  # lr: scheduled
    assert saved["optimizer"]["state"].keys() == reference["state"].keys()
    for i, s in reference["state"].items():
        assert torch.allclose(s["momentum_buffer"], saved["optimizer"]["state"][i]["momentum_buffer"], atol=1e-6)
    # The record adds up the ranks' shares: each slice's loss terms (greedy: the loss is its task term)
    # and each slice of the test set, evaluated as the merged model evaluates in one process.
    record = read_metrics(out)[-1]
    assert [terms["task"] for terms in record["train_piece_terms"]] == pytest.approx(record["train_losses"], rel=1e-5)
    learner.load_state_dict(saved["model"])
    data = open_data("cifar10", None, DataOptions(test_subset=100, path=data_path, progress=False))
    test = make_loader(data, data.test, "cpu", batch_size, train=False, seed=0, workers=0)
    with one_thread():
        result = evaluate_metrics(learner, test, argparse.Namespace(channels_last=True), torch.device("cpu"))
    assert record["test_loss"] == pytest.approx(result["loss"], rel=1e-5)
    assert record["test_accuracy"] == result["accuracy"]


@pytest.mark.parametrize(
    "flags, env, message",
    [
        (["--parallel", "pieces"], {}, "started by torchrun"),
        (["--parallel", "pieces"], {"RANK": "0", "WORLD_SIZE": "3"}, "the world has 3 processes but --K is 2"),
        (["--parallel", "data", "--batch-size", "3"], {"RANK": "0", "WORLD_SIZE": "2"}, "--batch-size 4 or more"),
        (["--micro-batches", "2"], {}, "only apply to --parallel pieces"),
        (["--parallel", "pieces", "--micro-batches", "30"], {}, "too small for 30 micro-batches"),
        (["--parallel", "pieces", "--dist-timeout", "0"], {}, "--dist-timeout must be > 0"),
        (["--parallel", "pieces,data"], {"RANK": "0", "WORLD_SIZE": "3"}, "3 is not a multiple of 2"),
        (["--parallel", "data", "--micro-batches", "2"], {}, "only apply to --parallel pieces or pieces,data"),
        (["--parallel", "data", "--sync-batchnorm"], {"RANK": "0", "WORLD_SIZE": "2"}, "SyncBatchNorm runs on GPUs only"),
        (["--sync-batchnorm"], {}, "--sync-batchnorm only applies to --parallel data or pieces,data"),
    ],
)
def test_misuse_is_one_clear_line(tmp_path, monkeypatch, capsys, flags, env, message):
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["train", *FAST, *flags, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()

"""benchmarks/cuda_memory_breakdown.py: what the CPU can run of it (state sizes, saved and live-tensor peaks per
piece), its replay of an allocator trace, and on a CUDA machine the whole breakdown on a tiny net."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("cuda_memory_breakdown", ROOT / "benchmarks" / "cuda_memory_breakdown.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = ["--arch", "resnet20", "--K", "2", "--cuts", "even", "--batch-size", "4"]


def test_cpu_runs_the_per_piece_breakdown_and_says_cuda_is_not_available(script, tmp_path, capsys):
    out = tmp_path / "breakdown.json"
    assert script.main([*TINY, "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "CUDA: not available" in printed
    report = json.loads(out.read_text())
    e2e, local = report["rows"]
    assert (e2e["K"], local["K"]) == (1, 2) and local["cuts"] == report["cuts"]
    for row in (e2e, local):
        state = row["state"]
        params = state["parameters_pieces"] + state["parameters_aux"]
        # every parameter gets a gradient and one momentum buffer; the batch is 4 float images and 4 int64 labels
        assert state["gradients"] == state["optimizer_state"] == params
        assert state["batch"] == 4 * 3 * 32 * 32 * 4 + 4 * 8
        assert len(row["windows"]) == row["K"] + 1  # each piece, then the optimiser step
        for (blocks, aux), window in zip(row["piece_saved_profile"], row["windows"]):
            # what the hooks saw in the step is the learner's profile of that piece (whose own input counts
            # there, not here: the batch is state)
            assert window["saved_peak"] == pytest.approx(blocks + aux, rel=0.02, abs=state["batch"])
            assert window["live_peak"] >= window["saved_peak"]
        assert row["windows"][-1]["saved_peak"] == 0  # the optimiser step saves nothing for backward
        assert row["live_peak"] == row["existing_bytes"] + max(w["live_peak"] for w in row["windows"])
        assert "allocator" not in row and "at_peak" not in row
    assert local["state"]["parameters_aux"] > 0 == e2e["state"]["parameters_aux"]
    ratio = 100 * local["live_peak"] / e2e["live_peak"]
    assert f"| default | – | – | – | {ratio:.1f} % |" in printed


def test_trace_replay_finds_the_blocks_alive_at_the_peak(script):
    frames = {"conv": [{"filename": "/x/torch/nn/modules/conv.py", "line": 5, "name": "_conv_forward"},
                       {"filename": "/y/infopro/local/learner.py", "line": 70, "name": "pair_step"}],
              "none": []}
    trace = [
        {"action": "alloc", "addr": 1, "size": 100, "frames": frames["conv"]},
        {"action": "alloc", "addr": 2, "size": 50, "frames": frames["none"]},
        {"action": "free_requested", "addr": 2, "size": 50},
        {"action": "free_completed", "addr": 2, "size": 50},
        {"action": "alloc", "addr": 3, "size": 70, "frames": frames["conv"]},  # peak: 1000 + 100 + 70
        {"action": "free_completed", "addr": 9, "size": 400},  # a block from before the trace
        {"action": "alloc", "addr": 4, "size": 300, "frames": frames["none"]},  # 770 + 300 = 1070 < 1170
    ]
    result = script.peak_blocks(trace, base_bytes=1000)
    assert result["peak_bytes"] == 1170 and result["blocks_alive"] == 2
    assert [b["bytes"] for b in result["largest"]] == [100, 70]
    assert result["by_site"] == [{"where": "conv.py:5 _conv_forward < learner.py:70 pair_step", "bytes": 170}]
    assert script.where([]).startswith("(no Python frame")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the allocator's breakdown needs a CUDA device")
def test_cuda_breakdown_adds_up(script, tmp_path, capsys):
    out = tmp_path / "breakdown.json"
    assert script.main([*TINY, "--device", "cuda", "--variants", "default,piece-step,expandable-segments",
                        "--out", str(out)]) == 0
    assert "CUDA: not available" not in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 6 and not [r["error"] for r in rows if "error" in r]
    for row in rows:
        parts = {k: v for k, v in row["at_peak"].items() if k not in ("op", "window")}
        assert sum(parts.values()) == pytest.approx(row["metered_peak_allocated"], rel=0.01)
        assert row["metered_peak_allocated"] == pytest.approx(row["allocator"]["peak_allocated"], rel=0.1)
        assert row["allocator"]["peak_reserved"] >= row["allocator"]["peak_allocated"]
    default = [r for r in rows if r["variant"] == "default"]
    assert all(r["snapshot_peak"]["peak_bytes"] == pytest.approx(r["allocator"]["peak_allocated"], rel=0.1)
               for r in default)
    assert [r["allocator"]["allocator_config"] for r in rows if r["variant"] == "expandable-segments"] == \
        ["expandable_segments:True"] * 2

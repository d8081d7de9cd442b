"""Fast by default: channels-last for convolutional networks, `--compile` per piece, and the loop's layering.

The compile tests use the "aot_eager" backend: it runs the same Dynamo capture and AOTAutograd forward/
backward split as the default inductor backend, which is what decides gradient isolation and when each
piece's graph is freed, but skips inductor's C++ code generation (minutes per network on two shared CPU
cores). `--compile` itself uses inductor.
"""

import ast
import gc
from pathlib import Path

import pytest
import torch

import infopro
from infopro import InfoProError
from infopro.bench import SavedActivationMeter
from infopro.cli import main
from infopro.train import load_checkpoint
from conftest import FAST

SRC = Path(infopro.__file__).resolve().parent


def make_learner(K: int = 2) -> infopro.LocalLearner:
    torch.manual_seed(0)
    return infopro.LocalLearner(infopro.build_backbone("resnet20", 10), K, "infopro-softmax", cuts="even")


@pytest.fixture(scope="module", autouse=True)
def no_compiled_garbage_afterwards():
    """Leave no compiled state or cyclic garbage to later tests: a finalizer that a later garbage
    collection runs in the middle of another test could swallow the signal that test sends itself."""
    yield
    import torch._dynamo

    torch._dynamo.reset()
    gc.collect()


@pytest.fixture(scope="module")
def compiled_learner():
    learner = make_learner()
    learner.compile_pieces(backend="aot_eager")
    return learner


def test_compiled_pieces_give_the_eager_gradients_and_keep_the_state_dict(compiled_learner):
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    eager = make_learner()
    compiled_learner.load_state_dict(eager.state_dict())
    compiled_learner.zero_grad(set_to_none=True)
    out = compiled_learner.train_step(x, y)
    reference = eager.train_step(x, y)
    assert out["losses"] == pytest.approx(reference["losses"], rel=1e-5)
    assert compiled_learner.state_dict().keys() == eager.state_dict().keys()  # compiled in place: same keys
    for (name, a), b in zip(eager.named_parameters(), compiled_learner.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), name
    # Each piece and each objective is its own compiled module; the learner is not one graph.
    assert all(getattr(m, "_compiled_call_impl", None) is not None for m in (*compiled_learner.pieces, *compiled_learner.aux))
    assert getattr(compiled_learner, "_compiled_call_impl", None) is None


def test_compiled_pieces_isolate_gradients(compiled_learner):
    """The first piece's gradients come from its own loss alone: zeroing the last piece's loss weight
    (scaling its objective's output by 0) leaves them unchanged."""
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    compiled_learner.zero_grad(set_to_none=True)
    compiled_learner.train_step(x, y)
    first = [p.grad.clone() for p in compiled_learner.pieces[0].parameters()]
    last = compiled_learner.aux[-1]
    handle = last.register_forward_hook(lambda module, args, loss: loss * 0)
    try:
        compiled_learner.zero_grad(set_to_none=True)
        compiled_learner.train_step(x, y)
    finally:
        handle.remove()
    assert all(torch.equal(a, p.grad) for a, p in zip(first, compiled_learner.pieces[0].parameters()))
    assert all(p.grad is None or not p.grad.any() for p in compiled_learner.pieces[-1].parameters())


def test_compiled_step_holds_one_piece_at_a_time(compiled_learner):
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    compiled_learner.train_step(x, y)  # compiled before the meter starts
    with SavedActivationMeter(exclude=list(compiled_learner.parameters())) as meter:
        compiled_learner.train_step(x, y)
    per_piece = compiled_learner.piece_memory(8)
    one_piece = max(blocks + aux for blocks, aux in per_piece)
    all_blocks = sum(blocks for blocks, _ in per_piece)
    assert all_blocks > one_piece  # so a step holding two pieces' graphs at once would fail the next line
    assert 0 < meter.peak_bytes <= one_piece


def test_missing_compiler_is_one_clear_line(monkeypatch, tmp_path, capsys):
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    with pytest.raises(InfoProError, match="torch.compile does not support this Python"):
        make_learner().compile_pieces()
    assert main(["train", *FAST, "--compile", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--compile: torch.compile does not support" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
    monkeypatch.undo()

    def broken(*args, **kwargs):
        raise RuntimeError("Compiler: cc not found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(InfoProError, match=r"cannot run on cpu: Compiler: cc not found; run without --compile"):
        make_learner().compile_pieces()


def test_channels_last_is_the_default_for_convolutional_networks(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--epochs", "1", "--out", str(out)]) == 0
    assert "channels_last: true" in (out / "config.yaml").read_text()
    weight = load_checkpoint(out / "checkpoint.pt")["model"]["pieces.0.0.0.weight"]
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    out = tmp_path / "off"
    assert main(["train", *FAST, "--epochs", "1", "--no-channels-last", "--out", str(out)]) == 0
    assert "channels_last: false" in (out / "config.yaml").read_text()
    assert load_checkpoint(out / "checkpoint.pt")["model"]["pieces.0.0.0.weight"].is_contiguous()


def test_channels_last_default_follows_the_layers():
    from infopro.device import is_convolutional

    assert is_convolutional(infopro.build_backbone("resnet20", 10))
    assert not is_convolutional(infopro.build_backbone("vit_tiny_p4", 10))  # one conv: the patch embedding


def test_parallel_never_imports_the_training_loop():
    """One direction only: train/ uses infopro.parallel, parallel/ uses the learner, data and device."""
    for path in (SRC / "parallel").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                # `from ..train...` (level 2) or `from infopro.train...`; `from .trainer` is parallel's own
                target = (node.module or "") if node.level != 1 else ""
                assert target.split(".")[0] != "train" and not target.startswith("infopro.train"), (path.name, target)

"""The method interface: existing methods unchanged bitwise, the rivals' isolation, hooks and training."""

from types import SimpleNamespace
import copy

import pytest
import torch
import torch.nn.functional as F

from infopro import InfoProError, LocalLearner, build_backbone
from infopro.cli import main
from infopro.local import METHODS, Decoder, build_head, reconstruction_loss, split_blocks, supervised_contrastive_loss
from infopro.local.aux_nets import AuxOptions
from infopro.local.methods.auglocal import augmented_net, pyramid_depth, sampled_layers
from infopro.local.methods.predsim import similarity_matrix
from infopro.parallel import MeshTrainer

RIVALS = ["predsim", "auglocal", "man", "man++", "hpff"]


def batch(n=8, classes=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, classes, (n,), generator=g)


def grads(modules):
    return [p.grad.clone() if p.grad is not None else None for m in modules for p in m.parameters()]


def perturb_(modules):
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                p.add_(torch.randn_like(p))


# ---------------------------------------------------------------- existing methods through the interface

@pytest.mark.parametrize("arch,K,cuts", [("resnet32", 4, "paper"), ("resnet20", 2, "even")])
@pytest.mark.parametrize("method,head,loss,decoder", [
    ("greedy", "0c1f", "ce", False), ("dgl", "1c2f", "ce", False),
    ("infopro-softmax", "1c2f", "ce", True), ("infopro-contrast", "1c2f", "supcon", True),
])
def test_interface_equals_a_hand_built_composition_bitwise(arch, K, cuts, method, head, loss, decoder):
    """The method interface builds the same nets from the same random stream and gives the same gradients."""
    lambdas = (2, 1, 0.5, 3) if decoder else (0, 1, 0, 1)
    x, y = batch()
    torch.manual_seed(0)
    learner = LocalLearner(build_backbone(arch), K, method, cuts=cuts, lambdas=lambdas)
    learner.train_step(x, y)

    torch.manual_seed(0)
    backbone = build_backbone(arch)
    pieces = split_blocks(backbone.blocks, learner.cuts, backbone.head)
    nets, h = [], x
    shapes = [info.output_shape for info in learner.describe()]
    for k in range(K - 1):
        t = k / (K - 2) if K > 2 else 0.0
        recon, task = lambdas[0] + t * (lambdas[2] - lambdas[0]), lambdas[1] + t * (lambdas[3] - lambdas[1])
        out_dim = 128 if loss == "supcon" else 10
        head_net = build_head(head, shapes[k], out_dim, AuxOptions())
        decoder_net = Decoder(shapes[k], (3, 32, 32)) if decoder else None
        nets.append((head_net, decoder_net, recon, task))
    image = learner.unnormalize(x)
    for k, piece in enumerate(pieces):
        out = piece(h)
        if k == K - 1:
            total = F.cross_entropy(out, y)
        else:
            head_net, decoder_net, recon, task = nets[k]
            total = out.new_zeros(())
            if decoder_net is not None:
                total = total + recon * reconstruction_loss(decoder_net(out), image)
            z = head_net(out)
            total = total + task * (supervised_contrastive_loss(z, y) if loss == "supcon" else F.cross_entropy(z, y))
        total.backward()
        h = out.detach()

    # Pieces (the backbone's modules), then each piece's aux nets (decoder, then head, as registered).
    hand_aux = [p.grad for n in nets for m in (n[1], n[0]) if m is not None for p in m.parameters()]
    mine_aux = [p.grad for p in learner.aux.parameters()]
    mine_pieces = [p.grad for p in learner.pieces.parameters()]
    hand_pieces = [p.grad for piece in pieces for p in piece.parameters()]
    assert len(mine_aux) == len(hand_aux) > 0 and len(mine_pieces) == len(hand_pieces)
    assert all(torch.equal(a, b) for a, b in zip(mine_pieces + mine_aux, hand_pieces + hand_aux))


# ---------------------------------------------------------------- isolation, stated per method

# method -> which earlier pieces a perturbation of pieces k+1.. may reach: 0 = none (fully isolated);
# 1 = piece k (HPFF's cascade: piece k+1's loss back-propagates into piece k, and no further).
REACH_BACK = {"greedy": 0, "dgl": 0, "infopro-contrast": 0, "predsim": 0, "auglocal": 0, "man": 0, "man++": 0,
              "hpff": 1, "hpff-contrast": 1}


@pytest.mark.parametrize("method", list(REACH_BACK))
def test_gradient_isolation_per_method(method):
    """Pieces 1..k and their aux nets receive gradients only from losses of pieces 1..k+reach (bitwise);
    for HPFF piece k's gradient also carries piece k+1's cascade, and nothing from k+2 on."""
    x, y = batch()
    torch.manual_seed(0)
    # MAN's README lambdas (5, 0.5, 0, 0) on the reference's next-stage schedule would give a piece of this
    # small K zero or negative weights (refused): constant lambdas instead. HPFF's default (README) lambdas
    # end at (0, 0): piece K-2's cascade would carry no gradient to see.
    lambdas = (5, 0.5) if method in ("man", "man++") else (5, 1, 5, 1) if method.startswith("hpff") else None
    learner = LocalLearner(build_backbone("resnet20"), 4, method, cuts="even", lambdas=lambdas)
    reach = REACH_BACK[method]
    for k in range(1, learner.K - reach):
        model = copy.deepcopy(learner)
        model.train_step(x, y)
        before = grads([*model.pieces[:k], *model.aux[:k]])
        model = copy.deepcopy(learner)  # the same state (a step moves MAN's EMA copies), perturbed
        perturb_([*model.pieces[k + reach:], *model.aux[k + reach:]])
        model.train_step(x, y)
        after = grads([*model.pieces[:k], *model.aux[:k]])
        assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(before, after)), f"{method}: k={k}"
    if reach:
        # ... and the cascade really does reach one piece back: perturbing piece k+1 moves piece k's gradient.
        model = copy.deepcopy(learner)
        model.train_step(x, y)
        before = grads([model.pieces[1]])
        model.zero_grad(set_to_none=True)
        perturb_([model.pieces[2]])
        model.train_step(x, y)
        assert any(not torch.equal(a, b) for a, b in zip(before, grads([model.pieces[1]])))


def test_frozen_ema_blocks_get_no_gradient_and_follow_the_next_piece():
    """The EMA moves inside train_step, right after the piece's backward and before any optimiser step
    (as in the authors' code), towards the next block's weights as they are then."""
    x, y = batch()
    torch.manual_seed(0)
    learner = LocalLearner(build_backbone("resnet20"), 3, "man++", cuts="even")
    objective = learner.aux[0]
    target = learner.pieces[1][0]  # the next piece's first block
    assert objective._target is target
    m = 0.995  # the default momentum
    expected = [e.mul(m).add(t * (1 - m)) for e, t in zip(objective.ema.parameters(), target.parameters())]
    learner.train_step(x, y)
    assert all(p.grad is None and not p.requires_grad for p in objective.ema.parameters())
    assert objective.scale.grad is not None  # MAN++'s s is trained
    assert all(torch.equal(e, x) for e, x in zip(objective.ema.parameters(), expected))
    others = {k: v.clone() for k, v in learner.state_dict().items()}
    learner.after_optimizer_step()  # nothing moves after the optimiser step any more
    assert all(torch.equal(v, learner.state_dict()[k]) for k, v in others.items())


def test_hpff_first_piece_learns_only_from_the_cascade():
    x, y = batch()
    torch.manual_seed(0)
    # K=4: piece 2's cascade has lambdas (2.5, 0.25) (K=3 would put piece 2 on the last pair, (0, 0)).
    learner = LocalLearner(build_backbone("resnet20"), 4, "hpff", cuts="even")
    out = learner.train_step(x, y)
    assert out["losses"][0] == 0.0
    assert all(g is not None and g.any() for g in grads([learner.pieces[0]]))
    # Without piece 2's loss, piece 1 would get no gradient at all: zero its cascade weight and see.
    torch.manual_seed(0)
    silent = LocalLearner(build_backbone("resnet20"), 4, "hpff", cuts="even",
                          method_options={"cascade_weight": 0.0})
    silent.train_step(x, y)
    assert all(g is None or not g.any() for g in grads([silent.pieces[0]]))


def test_hpff_cascade_gradient_equals_a_hand_built_composition_bitwise():
    """K=2: piece 1's gradient is exactly cascade_weight * d CE(piece2(piece1(x))) / d piece1."""
    x, y = batch()
    torch.manual_seed(0)
    learner = LocalLearner(build_backbone("resnet20"), 2, "hpff", cuts="even")
    hand = copy.deepcopy(learner)
    learner.train_step(x, y)
    (0.999 * F.cross_entropy(hand.pieces[1](hand.pieces[0](x)), y)).backward()
    assert all(torch.equal(a, b) for a, b in zip(grads([learner.pieces[0]]), grads([hand.pieces[0]])))


# ---------------------------------------------------------------- the rivals' nets

def test_auglocal_samples_later_layers_uniformly_with_pyramid_depth():
    assert sampled_layers(0, 16, 3) == [5, 10, 15]
    assert sampled_layers(12, 16, 5) == [13, 14, 15]  # fewer later layers than d: all of them
    assert [pyramid_depth(3, k, 14, 0.5) for k in range(13)] == [
        max(1, round(3 * (1 - 0.5 * k / 12) + 0.5 * k / 12)) for k in range(13)]
    assert pyramid_depth(3, 5, 14, 0.0) == 3
    net = augmented_net(16, [16, 32, 64], 10, 1)
    strides = [b.conv1.stride[0] for b in net[:3]]
    assert strides == [1, 2, 2] and net[2].conv2.out_channels == 64
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in net)
    assert isinstance(augmented_net(16, [64], 10, 1)[-2], torch.nn.BatchNorm1d)  # d = 1: BN before the fc


def test_predsim_similarity_of_labels_is_one_within_a_class():
    labels = torch.tensor([0, 0, 1])
    s = similarity_matrix(F.one_hot(labels, 10).float())
    assert s[0, 1] == pytest.approx(1.0) and s[0, 2] < 0
    features = torch.randn(5, 8, 4, 4)
    assert similarity_matrix(features).shape == (5, 5)


@pytest.mark.parametrize("method", RIVALS)
def test_rivals_train_above_chance(method):
    from test_learner import synthetic_task

    g = torch.Generator().manual_seed(0)
    # At 16x16 pixels (every other one) to keep the test fast; the quadrant still tells the class.
    x_train, y_train = synthetic_task(256, g)
    x_test, y_test = synthetic_task(128, g)
    x_train, x_test = x_train[..., ::2, ::2], x_test[..., ::2, ::2]
    torch.manual_seed(0)
    learner = LocalLearner(build_backbone("resnet20", 4), 2, method, cuts="even", num_classes=4,
                           input_shape=(3, 16, 16), mean=(0.5,) * 3, std=(0.5,) * 3)
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.02, momentum=0.9)
    for _ in range(4):
        for i in range(0, 256, 32):
            optimizer.zero_grad(set_to_none=True)
            learner.train_step(x_train[i:i + 32], y_train[i:i + 32])
            optimizer.step()
            learner.after_optimizer_step()
    learner.eval()
    with torch.no_grad():
        accuracy = (learner(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.6  # chance is 0.25


# ---------------------------------------------------------------- options, parallel, describe, resume

def test_method_options_are_checked():
    with pytest.raises(InfoProError, match=r"takes no option\(s\) depth"):
        LocalLearner(build_backbone("resnet20"), 2, "dgl", cuts="even", method_options={"depth": 3})
    with pytest.raises(InfoProError, match=r"depth .* integer >= 1"):
        LocalLearner(build_backbone("resnet20"), 2, "auglocal", cuts="even", method_options={"depth": 0})
    with pytest.raises(InfoProError, match=r"momentum .* in \[0, 1\]"):
        LocalLearner(build_backbone("resnet20"), 2, "man", cuts="even", method_options={"momentum": 2})
    with pytest.raises(InfoProError, match=r"no decoder, so lambda1"):
        LocalLearner(build_backbone("resnet20"), 2, "auglocal", cuts="even", lambdas=(1, 1))


def test_a_method_flag_for_another_method_is_one_clear_line(tmp_path, capsys):
    assert _train("--out", tmp_path / "run", "--method", "man++", "--aux-depth", "3") == 2
    assert "--aux-depth does not apply to method 'man++'; it sets an option of auglocal" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_pieces_parallel_refuses_a_loss_that_crosses_ranks():
    learner = LocalLearner(build_backbone("resnet20"), 2, "hpff", cuts="even")
    for mode in ("pieces", "data", "pieces,data"):  # every piece in its own process or its own DDP
        with pytest.raises(InfoProError, match=rf"--parallel {mode} cannot run method 'hpff'.*one process"):
            MeshTrainer(learner, None, SimpleNamespace(mode=mode), None)


def test_pieces_parallel_sends_the_followed_weights_back(tmp_path):
    """MAN under --parallel pieces (pipelined): rank 2 sends its first block's weights to rank 1 at the start
    of every step and rank 1 moves its EMA at the end of it: the EMA (and every weight) ends as in one
    process, where it moves right after piece 1's backward. Momentum 0.5 makes a step's shift visible."""
    from test_parallel import assert_same_state, one_thread, torchrun
    from infopro.train import load_checkpoint

    flags = ["--arch", "resnet20", "--K", "2", "--cuts", "even", "--method", "man", "--ema-momentum", "0.5",
             "--train-subset", "200", "--test-subset", "100", "--batch-size", "50", "--epochs", "2",
             "--device", "cpu", "--quiet"]
    out, single = tmp_path / "run", tmp_path / "single"
    done = torchrun(*flags, "--parallel", "pieces", "--out", out)
    assert done.returncode == 0, done.stderr
    with one_thread():
        assert main(["train", *flags, "--out", str(single)]) == 0
    state, reference = (load_checkpoint(run / "checkpoint.pt")["model"] for run in (out, single))
    assert any(k.startswith("aux.0.ema.") for k in state)
    assert_same_state(reference, state)
    # The EMA follows the block as it was before the last step (it moves before each step): not the final one.
    ema = {k[len("aux.0.ema."):]: v for k, v in state.items() if k.startswith("aux.0.ema.")}
    assert not torch.allclose(ema["conv1.weight"], state["pieces.1.0.conv1.weight"])


def test_describe_says_what_crosses(capsys):
    for method, phrase in [("hpff", "back-propagates into piece k-1"), ("man", "EMA"), ("auglocal", "shapes only"),
                           ("dgl", "nothing")]:
        lambdas = ["--lambdas", "5", "0.5"] if method == "man" else []  # README's would be < 0 at this K
        assert main(["describe", "--arch", "resnet20", "--K", "3", "--cuts", "even", "--method", method,
                     "--batch-size", "4", *lambdas]) == 0
        out = capsys.readouterr().out
        assert "what crosses a cut" in out and phrase in out, method


def test_every_registered_method_says_what_it_is():
    for name in METHODS:
        method = METHODS.get(name)
        assert method.name == name and method.description
        assert method.pieces_parallel_refusal is None or method.crossings


def _train(*args):
    from conftest import FAST

    return main(["train", *FAST, *map(str, args)])


@pytest.mark.parametrize("method,flags", [("predsim", []), ("auglocal", ["--aux-depth", "3", "--aux-pyramid", "0"]),
                                          ("hpff", ["--hpff-weights", "0.01", "0.99"])])
def test_rivals_train_from_the_cli(tmp_path, method, flags):
    out = tmp_path / "run"
    assert _train("--out", out, "--method", method, "--epochs", "1", *flags) == 0
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"] == method


def test_resume_keeps_ema_copies_and_learnable_scalars(tmp_path, monkeypatch):
    """MAN++'s EMA blocks and s live in the checkpoint: a resumed run ends where an uninterrupted one does."""
    from conftest import stop_after_first_checkpoint
    from infopro.train import load_checkpoint

    flags = ["--method", "man++", "--ema-momentum", "0.9"]
    straight = tmp_path / "straight"
    assert _train("--out", straight, *flags) == 0
    interrupted = tmp_path / "interrupted"
    stop_after_first_checkpoint(monkeypatch, lambda: _train("--out", interrupted, *flags))
    assert _train("--out", interrupted, "--resume", *flags) == 0
    a = load_checkpoint(straight / "checkpoint.pt")["model"]
    b = load_checkpoint(interrupted / "checkpoint.pt")["model"]
    assert any(".ema." in k for k in a) and "aux.0.scale" in a
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["aux.0.scale"], torch.tensor(1.0))  # s was trained


def test_every_config_builds_its_learner():
    """configs/cifar10/*.yaml (scripts/make_configs.py) parse and build, rivals included."""
    import argparse
    from pathlib import Path

    from infopro.describe import method_options
    from infopro.train.args import add_train_arguments, read_config

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    paths = sorted((Path(__file__).resolve().parents[1] / "configs" / "cifar10").glob("*.yaml"))
    assert {p.stem.split("-")[1] for p in paths} >= {"predsim", "auglocal", "man", "man++", "hpff"}
    for path in paths:
        args = parser.parse_args([])
        vars(args).update(read_config(path, parser))
        learner = LocalLearner(build_backbone(args.arch), args.K, args.method, cuts=args.cuts, lambdas=args.lambdas,
                               method_options=method_options(args))
        assert learner.K == args.K and len(learner.cuts) == args.K - 1, path.name

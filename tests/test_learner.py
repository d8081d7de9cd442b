import copy

import pytest
import torch
import torch.nn.functional as F

from infopro import InfoProError, LocalLearner, build_backbone
from infopro.local import Lambdas

METHODS = ["greedy", "dgl", "infopro-softmax", "infopro-contrast"]


def batch(n=8, classes=10):
    return torch.randn(n, 3, 32, 32), torch.randint(0, classes, (n,))


def make(method="infopro-contrast", K=4, arch="resnet20", **kwargs):
    kwargs.setdefault("cuts", "even")
    return LocalLearner(build_backbone(arch), K, method, **kwargs)


def grads(modules):
    return [p.grad.clone() if p.grad is not None else None for m in modules for p in m.parameters()]


@pytest.mark.parametrize("method", METHODS)
def test_gradient_isolation(method):
    """Changing pieces k+1..K changes no gradient of pieces 1..k (bitwise)."""
    x, y = batch()
    learner = make(method, K=4, lambdas=(1, 1, 1, 1) if "infopro" in method else None)
    for k in range(1, learner.K):
        model = copy.deepcopy(learner)
        model.train_step(x, y)
        before = grads([*model.pieces[:k], *model.aux[:k]])
        later_before = grads([*model.pieces[k:], *model.aux[k:]])
        assert all(g is not None for g in before)
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for module in [*model.pieces[k:], *model.aux[k:]]:
                for p in module.parameters():
                    p.add_(torch.randn_like(p))
        model.train_step(x, y)
        after = grads([*model.pieces[:k], *model.aux[:k]])
        assert all(torch.equal(a, b) for a, b in zip(before, after)), f"piece <= {k} changed"
        # The perturbation was real: the later pieces' own gradients moved.
        later_after = grads([*model.pieces[k:], *model.aux[k:]])
        assert any(not torch.equal(a, b) for a, b in zip(later_before, later_after) if a is not None)


def test_an_earlier_piece_does_change_later_gradients():
    x, y = batch()
    learner = make("dgl", K=2)
    learner.train_step(x, y)
    later = grads([learner.pieces[1]])
    learner.zero_grad(set_to_none=True)
    with torch.no_grad():
        for p in learner.pieces[0].parameters():
            p.add_(torch.randn_like(p))
    learner.train_step(x, y)
    assert any(not torch.equal(a, b) for a, b in zip(later, grads([learner.pieces[1]])))


def test_e2e_matches_plain_backpropagation():
    x, y = batch()
    reference = build_backbone("resnet20")
    backbone = copy.deepcopy(reference)
    learner = LocalLearner(backbone, 1, "e2e")
    out = learner.train_step(x, y)
    F.cross_entropy(reference(x), y).backward()
    ref_grads = [p.grad for p in reference.parameters()]
    own_grads = [p.grad for p in backbone.parameters()]
    assert all(g is not None for g in own_grads)
    assert len(ref_grads) == len(own_grads)
    assert all(torch.equal(a, b) for a, b in zip(ref_grads, own_grads))
    assert out["losses"][0] == pytest.approx(F.cross_entropy(reference(x), y).item(), rel=1e-6)


def test_e2e_needs_k1_and_any_method_at_k1_is_e2e():
    with pytest.raises(InfoProError, match=r"method 'e2e'.*use K=1"):
        make("e2e", K=4)
    learner = make("greedy", K=1)
    assert len(learner.pieces) == 1 and learner.cuts == []


@pytest.mark.parametrize("method", METHODS)
def test_train_step_and_forward(method):
    x, y = batch()
    learner = make(method, K=3)
    out = learner.train_step(x, y)
    assert out["logits"].shape == (8, 10) and not out["logits"].requires_grad
    assert len(out["losses"]) == 3 and all(isinstance(v, float) for v in out["losses"])
    assert len(learner.pieces) == len(learner.aux) == 3
    learner.eval()
    exported = learner.export().eval()
    assert torch.equal(learner(x), exported(x))
    assert not any(name.startswith("aux") for name, _ in exported.named_parameters())


def test_pieces_share_the_backbone_and_export_is_a_copy():
    backbone = build_backbone("resnet20")
    learner = LocalLearner(backbone, 2, "dgl", cuts=[4])
    assert learner.pieces[0][0] is backbone.blocks[0]
    assert learner.pieces[1][-1] is backbone.head
    exported = learner.export()
    with torch.no_grad():
        next(exported.parameters()).add_(1)
    assert not torch.equal(next(exported.parameters()), next(backbone.parameters()))
    # No parameter is stored twice in the state dict.
    assert len(learner.state_dict()) == len(set(map(id, learner.state_dict().values())))


def test_aux_nets_follow_the_method():
    greedy = make("greedy", K=3)
    assert greedy.aux[0].decoder is None and len(greedy.aux[0].head) == 3  # pool, flatten, linear
    contrast = make("infopro-contrast", K=3)
    assert contrast.aux[0].decoder is not None
    assert contrast.aux[0].head[-1].out_features == 128  # the embedding
    softmax = make("infopro-softmax", K=3, head="2c2f")
    assert softmax.aux[1].head[-1].out_features == 10
    assert sum(isinstance(m, torch.nn.Conv2d) for m in softmax.aux[1].head) == 2
    assert list(make("dgl", K=3).aux[-1].parameters()) == []  # the last piece uses the real head


def test_lambda_schedule():
    lambdas = Lambdas.parse((6, 0, 1, 2))
    assert lambdas.for_piece(0, 4) == (6, 0)
    assert lambdas.for_piece(1, 4) == (3.5, 1)
    assert lambdas.for_piece(2, 4) == (1, 2)
    assert lambdas.for_piece(0, 2) == (6, 0)
    learner = make("infopro-contrast", K=4, lambdas=(6, 0, 1, 2))
    weights = [(a.recon_weight, a.task_weight) for a in learner.aux]
    assert weights == [(6, 0), (3.5, 1), (1, 2), (0, 1)]
    assert learner.aux[0].head is None  # lambda2 = 0: no head to train


def test_bad_arguments_give_clear_errors():
    with pytest.raises(InfoProError, match=r"unknown method 'infopro'.*infopro-contrast"):
        make("infopro")
    with pytest.raises(InfoProError, match=r"unknown auxiliary head 'big'"):
        make("dgl", head="big")
    with pytest.raises(InfoProError, match=r"four numbers"):
        make(lambdas=(1, 2, 3))
    with pytest.raises(InfoProError, match=r"no decoder, so lambda1"):
        make("dgl", lambdas=(1, 1, 1, 1))
    with pytest.raises(InfoProError, match=r"num_classes=100"):
        make(num_classes=100)
    with pytest.raises(InfoProError, match=r"SequentialBackbone"):
        LocalLearner(torch.nn.Linear(3, 3), 1, "e2e")
    with pytest.raises(InfoProError, match=r"built for \(3, 32, 32\)"):
        make().train_step(torch.randn(2, 3, 16, 16), torch.zeros(2, dtype=torch.long))


def test_other_input_shapes_and_channels():
    learner = LocalLearner(build_backbone("resnet20", 5, in_channels=1), 3, "infopro-softmax", cuts="even",
                           input_shape=(1, 24, 24), num_classes=5, mean=(0.5,), std=(0.5,))
    out = learner.train_step(torch.randn(4, 1, 24, 24), torch.randint(0, 5, (4,)))
    assert out["logits"].shape == (4, 5)
    assert learner.aux[0].decoder(torch.randn(4, 16, 24, 24)).shape == (4, 1, 24, 24)


def test_determinism():
    x, y = batch()
    torch.manual_seed(1)
    a = make("infopro-contrast").train_step(x, y)["losses"]
    torch.manual_seed(1)
    b = make("infopro-contrast").train_step(x, y)["losses"]
    assert a == b


def synthetic_task(n, generator):
    """Four classes: the class decides which quadrant of the image is bright."""
    y = torch.randint(0, 4, (n,), generator=generator)
    x = 0.3 * torch.randn(n, 3, 32, 32, generator=generator)
    for i, c in enumerate(y.tolist()):
        r, s = divmod(c, 2)
        x[i, :, 16 * r:16 * r + 16, 16 * s:16 * s + 16] += 1.0
    return x, y


@pytest.mark.parametrize("method", METHODS)
def test_a_short_run_learns_above_chance(method):
    g = torch.Generator().manual_seed(0)
    x_train, y_train = synthetic_task(256, g)
    x_test, y_test = synthetic_task(128, g)
    learner = LocalLearner(build_backbone("resnet20", 4), 2, method, cuts="even", num_classes=4,
                           mean=(0.5,) * 3, std=(0.5,) * 3)
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.02, momentum=0.9)
    for _ in range(5):
        for i in range(0, 256, 32):
            optimizer.zero_grad(set_to_none=True)
            learner.train_step(x_train[i:i + 32], y_train[i:i + 32])
            optimizer.step()
    learner.eval()
    with torch.no_grad():
        accuracy = (learner(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.6  # chance is 0.25


def test_bf16_autocast_train_step():
    x, y = batch()
    learner = make("infopro-softmax", K=3)
    learner.amp_dtype = torch.bfloat16
    out = learner.train_step(x, y)
    assert all(torch.isfinite(torch.tensor(out["losses"])))
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in learner.pieces[0].parameters())


def test_building_a_learner_leaves_modes_and_statistics_alone():
    backbone = build_backbone("resnet20")
    backbone.blocks[2].eval()
    stats = {k: v.clone() for k, v in backbone.state_dict().items()}
    learner = LocalLearner(backbone, 2, "dgl", cuts="even")
    assert not backbone.blocks[2].training and backbone.blocks[1].training
    assert all(torch.equal(stats[k], v) for k, v in backbone.state_dict().items())
    assert learner.describe()[0].output_shape == (32, 16, 16)  # after block 4, the first of stage 2


def test_a_piece_with_no_loss_is_refused():
    with pytest.raises(InfoProError, match=r"piece 1 of 3 no loss"):
        make("greedy", K=3, lambdas=(0, 0, 0, 1))


def test_learner_follows_the_backbone_dtype():
    learner = LocalLearner(build_backbone("resnet20").double(), 2, "infopro-softmax", cuts="even")
    x, y = batch()
    out = learner.train_step(x.double(), y)
    assert out["logits"].dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in learner.aux.parameters())

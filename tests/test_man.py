"""MAN and MAN++ against a hand-written re-statement of their authors' training step.

The re-statement below follows the reference's forward pass as equations (its `resnetInfoPro_MAN.py` and
`resnetInfoPro_MANPP.py`, CIFAR; nothing of theirs is imported): the split table of `config.py`, per piece
y = LB(h) + EMA(h) (MAN++: s LB(h) + (2 - s) EMA(h)), the ratio lo / (K - 2) of the next block's stage lo,
lambda_1 (1 - ratio) + lambda_2 ratio, sigmoid + BCE on the un-normalised image and the head's loss, the
backward, then the EMA update towards the next block's weights as they are then, and one SGD step at the end.
It runs on copies of our learner's modules (the same initial weights), so the two must end equal.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from infopro import InfoProError, LocalLearner, build_backbone
from infopro.cli import main

# The reference's split tables for ResNet-32 (its config.py), (stage, block), the last entry ending the network.
SPLITS = {
    4: [(1, 2), (2, 1), (3, 0), (3, 4)],
    8: [(1, 0), (1, 2), (1, 4), (2, 1), (2, 3), (3, 0), (3, 2), (3, 4)],
    16: [(s, b) for s in (1, 2, 3) for b in range(5)],  # 15 entries for "K=16"
}
README_LAMBDAS = (5, 0.5, 0, 0)


def block_index(stage, block):
    return 0 if stage == 0 else 1 + (stage - 1) * 5 + block


def next_position(stage, block):
    return (stage + 1, 0) if block == 4 else (stage, block + 1)


def reference_supcon(z, labels, t=0.07):
    """losses.py, one view: mean over positives (empty: / 1), then over ALL anchors."""
    z = F.normalize(z, dim=1)
    mask = (labels[:, None] == labels[None, :]).float()
    logits = z @ z.T / t
    logits = logits - logits.max(1, keepdim=True).values.detach()
    not_self = 1 - torch.eye(len(z))
    mask = mask * not_self
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True))
    mask_sum = mask.sum(1)
    mask_sum[mask_sum == 0] += 1
    return (-(mask * log_prob).sum(1) / mask_sum).mean()


def reference_step(model, x, image, labels, ref_K, lambdas, plus_plus, momentum, contrast):
    """One training step as the reference's forward() + optimizer.step() runs it, on `model`'s modules."""
    blocks, head = model._backbone.blocks, model._backbone.head
    ixx_1, ixy_1, ixx_2, ixy_2 = lambdas
    entries = SPLITS[ref_K]

    def local_loss(aux, h, ratio, stem):
        if plus_plus:
            y = aux.scale * aux.learnable(h) + (2 - aux.scale) * aux.ema(h)
        else:
            y = aux.learnable(h) + aux.ema(h)
        ixx, ixy = ixx_1 * (1 - ratio) + ixx_2 * ratio, ixy_1 * (1 - ratio) + ixy_2 * ratio
        loss_ixx = F.binary_cross_entropy(torch.sigmoid(aux.infopro.decoder(y)), image)
        out = aux.infopro.head(y)
        loss_ixy = reference_supcon(out, labels) if (stem or contrast) else F.cross_entropy(out, labels)
        return ixx * loss_ixx + ixy * loss_ixy

    def follow(aux, position):
        with torch.no_grad():
            for target, ema in zip(blocks[block_index(*position)].parameters(), aux.ema.parameters()):
                ema.copy_(ema * momentum + target * (1 - momentum))

    aux = iter(model.aux)
    h = blocks[0](x)  # conv1, bn1, relu
    if plus_plus:  # the stem is a piece of its own: LB_first / EMA_first, ratio 0, 1c2f Contrast head
        stem_aux = next(aux)
        local_loss(stem_aux, h, 0.0, stem=True).backward()
        h = h.detach()
        follow(stem_aux, (1, 0))
    start = 1
    for stage, block in entries[:-1]:
        end = block_index(stage, block)
        for i in range(start, end + 1):
            h = blocks[i](h)
        start = end + 1
        lo, la = next_position(stage, block)
        ratio = lo / (ref_K - 2) if ref_K > 2 else 0
        piece_aux = next(aux)
        local_loss(piece_aux, h, ratio, stem=False).backward()
        h = h.detach()
        follow(piece_aux, (lo, la))
    for i in range(start, len(blocks)):
        h = blocks[i](h)
    F.cross_entropy(head(h), labels).backward()


@pytest.fixture
def one_thread():
    """One thread: a multi-threaded convolution's reductions differ in the last bits between the two sides,
    and two steps through BatchNorm on a batch of 8 magnify that (with one thread they agree to ~1e-7)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)


@pytest.mark.parametrize("method,ref_K,K,lambdas,options", [
    ("man++", 4, 5, (1, 2, 0.5, 1), {}),  # README lambdas turn negative at K=4 (ratio 1.5): positive ones here
    ("man++", 8, 9, README_LAMBDAS, {}),
    ("man++", 8, 9, README_LAMBDAS, {"task_loss": "supcon"}),
    ("man++", 16, 16, README_LAMBDAS, {"lambda_K": 16}),
    ("man", 16, 15, README_LAMBDAS, {"lambda_K": 16}),  # MAN's README run: K=16, 15 pieces
])
def test_two_steps_equal_the_reference_step(method, ref_K, K, lambdas, options, one_thread):
    plus_plus = method == "man++"
    cuts = [block_index(*p) for p in SPLITS[ref_K][:-1]]
    cuts = [0, *cuts] if plus_plus else cuts
    momentum = 0.5  # far from 1, so an EMA update at another moment would show
    torch.manual_seed(0)
    learner = LocalLearner(build_backbone("resnet32"), K, method, cuts=cuts, input_shape=(3, 8, 8),
                           lambdas=lambdas, method_options={"momentum": momentum, **options})
    hand = copy.deepcopy(learner)
    g = torch.Generator().manual_seed(1)
    image = torch.rand(8, 3, 8, 8, generator=g) * 0.9 + 0.05
    x = (image - learner.mean) / learner.std
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])  # classes 3 and 4 appear once
    ours_opt, hand_opt = sgd(learner), sgd(hand)
    for _ in range(2):  # the second step's forward reads the EMA the first step moved
        ours_opt.zero_grad(set_to_none=True)
        learner.train_step(x, labels)
        ours_opt.step()
        learner.after_optimizer_step()
        hand_opt.zero_grad(set_to_none=True)
        reference_step(hand, x, (x * hand.std + hand.mean), labels, ref_K, lambdas, plus_plus, momentum,
                       options.get("task_loss") == "supcon")
        hand_opt.step()
    ours, theirs = learner.state_dict(), hand.state_dict()
    assert ours.keys() == theirs.keys() and any(".ema." in k for k in ours)
    worst = max((ours[k].float() - theirs[k].float()).abs().max().item() for k in ours)
    for k in ours:
        assert torch.allclose(ours[k].float(), theirs[k].float(), rtol=1e-4, atol=1e-5), (k, worst)


def test_man_plus_plus_stem_piece_is_fixed_and_lambdas_follow_the_next_stage():
    cuts = [0] + [block_index(*p) for p in SPLITS[8][:-1]]
    learner = LocalLearner(build_backbone("resnet32"), 9, "man++", cuts=cuts, lambdas=README_LAMBDAS,
                           head="0c1f", input_shape=(3, 8, 8))
    stem = learner.aux[0].infopro
    assert type(stem.task_loss).__name__ == "SupConTerm" and stem.task_loss.mean == "all-anchors"
    assert isinstance(stem.head[0], torch.nn.Conv2d) and len([m for m in stem.head if isinstance(m, torch.nn.Linear)]) == 2
    assert all(type(a.infopro.task_loss).__name__ == "CrossEntropyTerm" for a in learner.aux[1:-1])
    assert all(len(a.infopro.head) == 3 for a in learner.aux[1:-1])  # --aux-head 0c1f reaches the others
    # t = lo / (8 - 2), lo the stage of the next block: 1, 1, 2, 2, 2, 3, 3; the stem piece 0.
    stages = [0, 1, 1, 2, 2, 2, 3, 3]
    got = [w for i in learner.describe()[:-1] for w in (i.recon_weight, i.task_weight)]
    assert got == pytest.approx([w for s in stages for w in (5 * (1 - s / 6), 0.5 * (1 - s / 6))])


def test_man_defaults_are_the_readme_run_and_the_blocks_start_fresh():
    learner = LocalLearner(build_backbone("resnet32"), 4, "man", cuts="paper", input_shape=(3, 8, 8),
                           lambdas=(1, 1))
    objective = learner.aux[0]
    assert learner.method_options == {"momentum": 0.995, "task_loss": "cross-entropy", "supcon_mean": "all-anchors",
                                      "lambda_schedule": "next-stage", "lambda_K": None}
    assert learner.method.default_lambdas.recon_first == 5 and learner.method.default_lambdas.task_first == 0.5
    assert type(objective.infopro.task_loss).__name__ == "CrossEntropyTerm"
    assert sum(isinstance(m, torch.nn.Conv2d) for m in objective.infopro.head) == 2  # 2c2f
    # LB and EMA are copies of the next block's architecture with weights of their own.
    target = objective.follows
    for copy_ in (objective.learnable, objective.ema):
        assert [p.shape for p in copy_.parameters()] == [p.shape for p in target.parameters()]
        assert not torch.equal(next(copy_.parameters()), next(target.parameters()))


def test_next_stage_schedule_refuses_zero_or_negative_weights_and_piece_schedule_is_infopro():
    cuts = [0] + [block_index(*p) for p in SPLITS[4][:-1]]
    with pytest.raises(InfoProError, match=r"next-stage.*2/\(4 - 2\).*never train.*--lambda-schedule piece"):
        LocalLearner(build_backbone("resnet32"), 5, "man++", cuts=cuts, input_shape=(3, 8, 8))
    with pytest.raises(InfoProError, match=r"increase its loss"):
        LocalLearner(build_backbone("resnet32"), 5, "man++", cuts=cuts, input_shape=(3, 8, 8), lambdas=(5, 1, 1, 1))
    learner = LocalLearner(build_backbone("resnet32"), 5, "man++", cuts=cuts, input_shape=(3, 8, 8),
                           lambdas=(4, 1, 1, 4), method_options={"lambda_schedule": "piece"})
    got = [w for i in learner.describe()[:-1] for w in (i.recon_weight, i.task_weight)]
    assert got == pytest.approx([w for k in range(4) for w in (4 - k, 1 + k)])
    with pytest.raises(InfoProError, match=r"lambda_schedule \(--lambda-schedule\) must be one of"):
        LocalLearner(build_backbone("resnet20"), 2, "man", cuts="even", method_options={"lambda_schedule": "k"})


def test_supcon_mean_option_reaches_the_loss_and_the_cli(capsys):
    learner = LocalLearner(build_backbone("resnet20"), 2, "infopro-contrast", cuts="even",
                           method_options={"supcon_mean": "anchors-with-positive"})
    assert learner.aux[0].task_loss.mean == "anchors-with-positive"
    assert LocalLearner(build_backbone("resnet20"), 2, "infopro-contrast", cuts="even").aux[0].task_loss.mean == \
        "all-anchors"
    with pytest.raises(InfoProError, match=r"takes no option\(s\) supcon_mean"):
        LocalLearner(build_backbone("resnet20"), 2, "infopro-softmax", cuts="even",
                     method_options={"supcon_mean": "all-anchors"})
    assert main(["describe", "--arch", "resnet20", "--K", "2", "--cuts", "even", "--method", "man", "--task-loss",
                 "supcon", "--supcon-mean", "anchors-with-positive", "--lambda-K", "2", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "task_loss=supcon" in out and "supcon_mean=anchors-with-positive" in out and "lambda_K=2" in out

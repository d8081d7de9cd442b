"""HPFF, AugLocal and PredSim against hand-written re-statements of their authors' code.

Each test runs one training step of ours and one of a small re-statement, inside the test, of the
equations the reference code runs (Zeudfish/HPFF `resnetInfoPro_HPFF.py` and `auxiliary_net.py`;
ChenxiangMA/AugLocal `resnet.py`, `auxiliary_nets.py`, `utils/others.py`), on copies of the same weights,
then one SGD step on each, and compares every weight and BatchNorm statistic within float32 rounding.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from infopro import InfoProError, LocalLearner, build_backbone
from infopro.constants import CIFAR_MEAN, CIFAR_STD
from infopro.local.methods.auglocal import augmented_net
from infopro.local.methods.predsim import pool_to_at_most
from infopro.models.resnet_cifar import BasicBlock

SIZE = 16  # tiny images: every map of a CIFAR ResNet is still at least 4x4


def images(n=8, classes=10, seed=1, size=SIZE):
    """Normalised inputs of images in [0, 1] (so that un-normalising gives the image back, as the references'
    `_image_restore` does without clamping) and labels."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, size, size, generator=g)
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return (image - mean) / std, torch.randint(0, classes, (n,), generator=g), image


def sgd(module):
    return torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)


def assert_same_state(ours, theirs):
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=lambda m: f"{key}: {m}")


# ---------------------------------------------------------------- HPFF

def quadrants(t):
    h, w = t.shape[-2] // 2, t.shape[-1] // 2
    return [t[..., :h, :w], t[..., :h, w:], t[..., h:, :w], t[..., h:, w:]]


def hpff_decoder_loss(decoders, features, image):
    """`auxiliary_net.Decoder.forward`: each quadrant upsampled (bilinear, corners aligned) to the image's
    quadrant, conv-BN-ReLU-conv-sigmoid, BCE against that image quadrant; the four BCEs summed."""
    total = 0
    for decoder, f, i in zip(decoders, quadrants(features), quadrants(image)):
        f = F.interpolate(f, size=i.shape[-2:], mode="bilinear", align_corners=True)
        total = total + F.binary_cross_entropy(torch.sigmoid(decoder.net(f)), i)
    return total


def hpff_reference_step(stem, modules, own_heads, heads, decoders, x, target, image, ixx, ixy, reference_K,
                        wx=0.001, wy=0.999):
    """`InfoProResNet.forward` (training, local_module_num > 1), lines 253-303: the stem once, y a clone of its
    output; module 0 has no loss; module i: wx * own CE + wy * (ratio-weighted decoder BCE + CE) on
    z = E_i(E_{i-1}(y)), ratio i / (K - 2); the last: wx * CE(logits_x) + wy * CE(logits_y)."""
    x = stem(x)
    y = torch.clone(x)
    for i in range(len(modules) - 1):
        if i == 0:
            x = modules[i](x).detach()
            continue
        x = modules[i](x)
        y = modules[i - 1](y)
        z = modules[i](y)
        ratio = i / (reference_K - 2) if reference_K > 2 else 0
        ixx_r = ixx[0] * (1 - ratio) + ixx[1] * ratio
        ixy_r = ixy[0] * (1 - ratio) + ixy[1] * ratio
        loss_x = F.cross_entropy(own_heads[i](x), target)
        loss_y = ixx_r * hpff_decoder_loss(decoders[i], z, image) + ixy_r * F.cross_entropy(heads[i](z), target)
        (wx * loss_x + wy * loss_y).backward()
        x, y = x.detach(), y.detach()
    logits_x = modules[-1](x)
    logits_y = modules[-1](modules[-2](y))
    (wx * F.cross_entropy(logits_x, target) + wy * F.cross_entropy(logits_y, target)).backward()


def test_hpff_step_equals_its_reference_at_the_readme_K():
    """The README's ResNet-32 run: --local_module_num 16 (15 modules, the stem merged into the first),
    cross-entropy, 2c2f heads, ixx 5 -> 0, ixy 0.5 -> 0; our config: K=15, cuts after blocks 1..14 and the
    last pair scaled by 13/14 (scripts/make_configs.py). Weights and BatchNorm statistics after one step."""
    x, y, image = images(size=8)  # 8x8: the last stage's 2x2 maps still have four quadrants
    torch.manual_seed(0)
    pieces, reference_K = 15, 16
    lambdas = (5, 0.5, 5 * (1 - 13 / 14), 0.5 * (1 - 13 / 14))
    learner = LocalLearner(build_backbone("resnet32"), pieces, "hpff", cuts=list(range(1, pieces)),
                           input_shape=(3, 8, 8), lambdas=lambdas)
    hand = copy.deepcopy(learner)
    optimizer = sgd(learner)
    learner.train_step(x, y)
    optimizer.step()

    aux = hand.aux
    modules = [hand.pieces[0][1:], *hand.pieces[1:]]
    hand_optimizer = sgd(hand)
    hpff_reference_step(
        hand.pieces[0][0], modules, [getattr(a, "own_head", None) for a in aux], [getattr(a, "head", None) for a in aux],
        [a.decoder.decoders if getattr(a, "decoder", None) is not None else None for a in aux],
        x, y, image, ixx=(5, 0), ixy=(0.5, 0), reference_K=reference_K)
    hand_optimizer.step()
    assert_same_state(learner, hand)

    # BatchNorm statistics moved as often as the reference's forward passes: the stem once, module 0 twice
    # (x and y), every middle module three times (x, z, then y for the next), the last twice.
    counts = [[m.num_batches_tracked.item() for m in piece.modules() if isinstance(m, nn.BatchNorm2d)]
              for piece in learner.pieces]
    assert counts[0][0] == 1 and set(counts[0][1:]) == {2}
    assert all(set(c) == {3} for c in counts[1:-1]) and set(counts[-1]) == {2}


def test_hpff_contrast_and_defaults():
    from infopro.local import METHODS
    from infopro.local.methods.base import Lambdas

    hpff = METHODS.get("hpff")
    assert (hpff.task_loss, hpff.head, hpff.default_lambdas) == ("cross-entropy", "2c2f", Lambdas(5, 0.5, 0, 0))
    assert METHODS.get("hpff-contrast").task_loss == "supcon"
    # The README's lambdas end at (0, 0): piece K-2 still trains by its own head, so it is not refused.
    learner = LocalLearner(build_backbone("resnet20"), 4, "hpff-contrast", cuts="even")
    assert learner.aux[2].own_head[-1].out_features == 128  # an embedding for the contrastive loss


# ---------------------------------------------------------------- AugLocal

def auglocal_reference_net(net_dim, layer_index, inplanes, depth, widen, classes):
    """`AuxNetwork(net_config='unifSamp')`, `auxiliary_nets.py` 212-246."""
    n_layers = len(net_dim)
    if depth >= n_layers - 1 - layer_index:
        indices = list(range(layer_index + 1, n_layers))
    else:
        indices = [round(layer_index + (n_layers - layer_index - 1) / depth * i) for i in range(1, depth + 1)]
    layers, num_pool = [], 0
    for j in indices:
        assert net_dim[j] >= inplanes
        num_pool += int(math.log2(net_dim[j] // inplanes))
        stride = 2 if num_pool >= 1 else 1
        num_pool -= stride == 2
        layers.append(BasicBlock(inplanes, int(net_dim[j] * widen), stride))
        inplanes = int(net_dim[j] * widen)
    layers += [nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten()]
    if depth <= 1:
        layers.append(nn.BatchNorm1d(inplanes))
    layers.append(nn.Linear(inplanes, classes))
    return nn.Sequential(*layers)


@pytest.mark.parametrize("reference_K,depth,widen", [(4, 1, 1), (4, 1, 2), (16, 2, 1)])
def test_auglocal_step_equals_its_reference(reference_K, depth, widen):
    """run.sh / README: ResNet-32, --local_module_num K --aux_net_depth d --pyramid --pyramid_coeff 0.5:
    K - d pieces cut after layers 0 .. K - d - 2 (train.py 84), CE with weight 1 (ixy 1 -> 1)."""
    x, y, _ = images()
    torch.manual_seed(0)
    pieces = reference_K - depth
    learner = LocalLearner(build_backbone("resnet32"), pieces, "auglocal", cuts=list(range(pieces - 1)),
                           input_shape=(3, SIZE, SIZE), widen=widen, method_options={"depth": depth, "pyramid": 0.5})
    hand = copy.deepcopy(learner)
    optimizer = sgd(learner)
    learner.train_step(x, y)
    optimizer.step()

    # The reference's nets, built from its rules, carry our nets' weights (same shapes in the same order).
    net_dim = [16] * 6 + [32] * 5 + [64] * 5
    depths = [max(1, round(depth * (1 - i * 0.5 / (pieces - 2)) + i * 0.5 / (pieces - 2) * 1))
              for i in range(pieces - 1)]
    nets = []
    for k in range(pieces - 1):
        net = auglocal_reference_net(net_dim, k, net_dim[k], depths[k], widen, 10)
        ours = hand.aux[k].head
        assert [tuple(p.shape) for p in net.parameters()] == [tuple(p.shape) for p in ours.parameters()]
        net.load_state_dict(ours.state_dict())
        nets.append(net)
    hand_optimizer = torch.optim.SGD([*hand.pieces.parameters(), *(p for n in nets for p in n.parameters())],
                                     lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    h = x
    for k, piece in enumerate(hand.pieces):
        out = piece(h)
        loss = F.cross_entropy(out if k == pieces - 1 else nets[k](out), y)
        loss.backward()
        h = out.detach()
    hand_optimizer.step()
    for k, net in enumerate(nets):
        hand.aux[k].head.load_state_dict(net.state_dict())
    assert_same_state(learner, hand)


def test_auglocal_batchnorm_follows_the_requested_depth_and_strides_the_widened_input():
    # d = 2 asked where a single later layer is left: no BatchNorm1d (the reference tests the depth asked).
    assert not any(isinstance(m, nn.BatchNorm1d) for m in augmented_net(64, [64], 10, 1, depth=2))
    assert isinstance(augmented_net(64, [64], 10, 1, depth=1)[-2], nn.BatchNorm1d)
    # widen 2: the reference compares 64 with its widened input (64), so the second doubling does not
    # downsample; strides="layers" follows the imitated layers (16 -> 32 -> 64: two halvings).
    strides = lambda net: [b.conv1.stride[0] for b in net if isinstance(b, BasicBlock)]  # noqa: E731
    assert strides(augmented_net(16, [32, 64], 10, 2)) == [2, 1]
    assert strides(augmented_net(16, [32, 64], 10, 2, strides="layers")) == [2, 2]
    assert strides(augmented_net(16, [32, 64], 10, 1)) == strides(augmented_net(16, [32, 64], 10, 1, strides="layers"))
    # ... and refuses a later layer narrower than the widened one before it, as the reference asserts.
    with pytest.raises(InfoProError, match="--aux-strides layers"):
        augmented_net(16, [16, 16], 10, 2)
    assert strides(augmented_net(16, [16, 16], 10, 2, strides="layers")) == [1, 1]
    with pytest.raises(InfoProError, match="strides"):
        LocalLearner(build_backbone("resnet20"), 2, "auglocal", cuts="even", method_options={"strides": "x"})


# ---------------------------------------------------------------- PredSim

def reference_pool(channels, dim, target_dim):
    """`utils/others.py` `get_pool_layer` (square maps)."""
    ks_h, ks_w = 1, 1
    dim_out_h, dim_out_w = dim, dim
    dim_in_decoder = channels * dim_out_h * dim_out_w
    while dim_in_decoder > target_dim and ks_h < dim:
        ks_h *= 2
        dim_out_h = math.ceil(dim / ks_h)
        dim_in_decoder = channels * dim_out_h * dim_out_w
        if dim_in_decoder > target_dim:
            ks_w *= 2
            dim_out_w = math.ceil(dim / ks_w)
            dim_in_decoder = channels * dim_out_h * dim_out_w
    if ks_h > 1 or ks_w > 1:
        pad_h = (ks_h * (dim_out_h - dim // ks_h)) // 2
        pad_w = (ks_w * (dim_out_w - dim // ks_w)) // 2
        return nn.AvgPool2d((ks_h, ks_w), padding=(pad_h, pad_w)), dim_in_decoder
    return nn.Identity(), dim_in_decoder


@pytest.mark.parametrize("channels,dim", [(32, 10), (64, 5), (16, 20), (16, 9), (64, 3), (32, 16)])
def test_predsim_pools_as_the_reference_where_the_kernel_does_not_tile(channels, dim):
    theirs, flat = reference_pool(channels, dim, 512)
    ours = pool_to_at_most(channels, dim, dim, 512)
    h = torch.randn(4, channels, dim, dim)
    out = ours(h)
    assert out[0].numel() == flat
    torch.testing.assert_close(out, theirs(h))


def test_predsim_trains_a_step_on_maps_that_do_not_tile():
    x = torch.randn(4, 3, 20, 20)  # ResNet maps 20, 10, 5: kernels (4, 2) on 10x10 and 5x5 pad
    learner = LocalLearner(build_backbone("resnet20"), 3, "predsim", cuts="even", input_shape=(3, 20, 20))
    losses = learner.train_step(x, torch.tensor([0, 1, 2, 3]))["losses"]
    assert all(math.isfinite(v) for v in losses)

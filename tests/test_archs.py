"""The IJCV architectures (ImageNet ResNets/ResNeXts, DenseNet-BC, ViTs), your own model, and aux nets by feature kind.

Small members of each family (narrow widths, few blocks, small inputs) keep the tests fast;
the registered sizes are checked on the meta device (no memory, no compute).
"""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from infopro import InfoProError, LocalLearner, build_backbone
from infopro.analysis import TrainSettings, estimate_i_hx, estimate_i_hy
from infopro.analysis.features import feature_map
from infopro.cli import main
from infopro.local import AUX_FAMILIES, AuxOptions, Feature, aux_family_for, feature_shapes, resolve_cuts
from infopro.local.aux_imagenet import ImageNetDecoder, ImageNetHead
from infopro.local.aux_tokens import PatchDecoder, TokenHead, TokensToMap
from infopro.models import TokenLayout, backbone_from_module, native_input_shape
from infopro.models.densenet import densenet
from infopro.models.resnet_imagenet import imagenet_resnet
from infopro.models.vit import vision_transformer

METHODS = ["greedy", "dgl", "infopro-softmax", "infopro-contrast"]

# (name, parameters with 1000 classes): torchvision's / timm's published counts.
PUBLISHED = [
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032), ("resnet101", 44_549_160),
    ("resnet152", 60_192_808), ("resnext50_32x4d", 25_028_904), ("resnext101_32x8d", 88_791_336),
    ("densenet121", 7_978_856), ("vit_tiny", 5_717_416), ("vit_small", 22_050_664),
]


def count(module):
    return sum(p.numel() for p in module.parameters())


def on_meta(arch, num_classes=1000):
    with torch.device("meta"):
        return build_backbone(arch, num_classes)


@pytest.mark.parametrize("arch, params", PUBLISHED)
def test_parameter_counts_equal_the_published_ones(arch, params):
    assert count(on_meta(arch)) == params


def test_densenet_bc_100_has_the_papers_size():
    assert 0.76e6 < count(on_meta("densenet_bc_100", 10)) < 0.78e6  # "0.8M" (Huang et al., k=12, L=100)


# Output shape of the stem and of the last block of every stage at the arch's own input size.
STAGE_OUTPUTS = {
    "resnet18": [(64, 56, 56), (64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)],
    "resnet50": [(64, 56, 56), (256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)],
    "resnext101_32x8d": [(64, 56, 56), (256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)],
    "densenet121": [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7), (1024, 7, 7)],
    "densenet_bc_100": [(24, 32, 32), (108, 16, 16), (150, 8, 8), (342, 8, 8)],
    "vit_tiny": [(197, 192), (197, 192)],
    "vit_small_p4": [(65, 384), (65, 384)],
}


@pytest.mark.parametrize("arch", sorted(STAGE_OUTPUTS))
def test_blocks_are_the_natural_cut_points(arch):
    backbone = on_meta(arch, 7)
    shapes = feature_shapes([*backbone.blocks, backbone.head], native_input_shape(arch))
    ends = [sum(backbone.stage_sizes[:s + 1]) - 1 for s in range(len(backbone.stage_sizes))]
    assert [tuple(shapes[i]) for i in ends] == STAGE_OUTPUTS[arch]
    assert tuple(shapes[-1]) == (7,)


@pytest.mark.parametrize("arch, shape", [("resnet18", (3, 64, 64)), ("resnet50", (3, 64, 64)),
                                         ("densenet_bc_100", (3, 32, 32)), ("vit_tiny_p4", (3, 32, 32)),
                                         ("vit_tiny", (3, 64, 64))])
def test_real_forward_at_small_inputs(arch, shape):
    model = build_backbone(arch, 5, shape[0]).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 5) and torch.isfinite(out).all()
        assert torch.equal(out, model.head(model.blocks(x)))


def test_patch16_vit_runs_at_other_sizes_with_a_resized_position_embedding():
    model = build_backbone("vit_tiny", 3).eval()
    with torch.no_grad():
        assert model.blocks[0](torch.randn(1, 3, 64, 96)).shape == (1, 1 + 4 * 6, 192)


def test_paper_imagenet_cuts_fall_after_the_published_block_of_layer2():
    for arch, cut in [("resnet101", 4), ("resnet152", 9), ("resnext101_32x8d", 6)]:
        backbone = on_meta(arch)
        assert resolve_cuts("paper", backbone, 2) == [cut]
        # Stem, 3 blocks of layer1, then layer2 block 0 / 5 / 2: 28x28 features with 512 channels at 224 px.
        assert tuple(feature_shapes(backbone.blocks[:cut + 1], (3, 224, 224))[-1]) == (512, 28, 28)
    with pytest.raises(InfoProError, match=r"no 'paper' cuts for arch 'resnet50' at K=2.*resnet101 K=2"):
        resolve_cuts("paper", on_meta("resnet50"), 2)


# Small members of each family, and an input size for each.
def tiny_resnet():
    return imagenet_resnet((1, 1, 1, 1), True, 4, widths=(8, 8, 16, 16))


def tiny_resnext():
    return imagenet_resnet((1, 1, 1, 1), True, 4, groups=4, width_per_group=32, widths=(8, 8, 16, 16))


def tiny_densenet():
    return densenet((3, 3, 3), 6, 4, imagenet_stem=False)


def tiny_vit():
    return vision_transformer(32, 4, 32, 4, 2, 4)


# family: (builder, input size); at 128 px a ResNet's cuts get the ImageNet (large-map) aux nets.
FAMILIES = {"resnet": (tiny_resnet, 64), "resnet-128px": (tiny_resnet, 128), "resnext": (tiny_resnext, 64),
            "densenet": (tiny_densenet, 32), "vit": (tiny_vit, 32)}


def grads(modules):
    return [p.grad.clone() if p.grad is not None else None for m in modules for p in m.parameters()]


def assert_gradient_isolation(learner, x, y):
    """Changing pieces k+1..K changes no gradient of pieces 1..k (bitwise), for every k."""
    for k in range(1, learner.K):
        model = copy.deepcopy(learner)
        model.train_step(x, y)
        before = grads([*model.pieces[:k], *model.aux[:k]])
        assert all(g is not None for g in before)
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for module in [*model.pieces[k:], *model.aux[k:]]:
                for p in module.parameters():
                    p.add_(torch.randn_like(p))
        model.train_step(x, y)
        assert all(torch.equal(a, b) for a, b in zip(before, grads([*model.pieces[:k], *model.aux[:k]])))
        later = grads([*model.pieces[k:]])
        assert all(g is not None for g in later)


def learner_for(make, size, K, method="infopro-contrast", **kwargs):
    """Lambdas (1, 1) by default, so that both InfoPro terms count as much in the gradient tests."""
    kwargs.setdefault("cuts", "even")
    kwargs.setdefault("lambdas", (1, 1, 1, 1) if "infopro" in method else None)
    return LocalLearner(make(), K, method, input_shape=(3, size, size), num_classes=4,
                        mean=(0.5,) * 3, std=(0.5,) * 3, **kwargs)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("K", [2, 4])
def test_gradient_isolation_for_each_family(family, K):
    make, size = FAMILIES[family]
    learner = learner_for(make, size, K)
    assert_gradient_isolation(learner, torch.randn(4, 3, size, size), torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family, size", [("resnet", 128), ("vit", 32)])
def test_train_step_for_every_method_with_each_feature_kind(family, size, method):
    make = FAMILIES[family][0]
    learner = learner_for(make, size, 3, method, cuts="balanced", profile_batch_size=4)
    kinds = {type(m).__name__ for obj in learner.aux[:-1] for m in (obj.head, obj.decoder) if m is not None}
    expected = {"resnet": {"greedy": {"Sequential"}, "dgl": {"ImageNetHead"}},
                "vit": {"greedy": {"TokenLinearHead"}, "dgl": {"TokenHead"}}}[family]
    expected["infopro"] = expected["dgl"] | ({"ImageNetDecoder"} if family == "resnet" else {"PatchDecoder"})
    assert kinds == expected.get(method, expected["infopro"])
    out = learner.train_step(torch.randn(4, 3, size, size), torch.tensor([0, 1, 2, 3]))
    assert len(out["losses"]) == 3 and all(torch.isfinite(torch.tensor(out["losses"])))
    assert all(p.grad is not None for p in learner.pieces[0].parameters())


def test_aux_family_follows_the_feature_not_the_arch():
    def family(shape, image, tokens=None):
        fits = aux_family_for(Feature(shape, image, tokens))
        return next(name for name in AUX_FAMILIES if AUX_FAMILIES.get(name) is fits)

    assert family((64, 8, 8), (3, 32, 32)) == "small-map"
    assert family((16, 96, 96), (3, 96, 96)) == "small-map"  # STL-10 keeps the CIFAR nets
    assert family((512, 28, 28), (3, 224, 224)) == "large-map"
    assert family((65, 192), (3, 32, 32), TokenLayout(4)) == "tokens"
    with pytest.raises(InfoProError, match="no auxiliary-net family fits a feature of shape"):
        aux_family_for(Feature((10,), (3, 32, 32)))
    with pytest.raises(InfoProError, match="declares no token layout"):
        LocalLearner(backbone_from_module(tiny_vit(), ["blocks.*"], "head"), 2, "dgl", cuts="even", num_classes=4)


def test_imagenet_decoder_and_head_are_the_papers_at_a_layer2_cut():
    decoder = ImageNetDecoder((512, 28, 28), (3, 224, 224))
    convs = [m for m in decoder if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0]) for c in convs] == [(128, 1), (32, 3), (12, 3), (3, 3)]
    assert [m.size for m in decoder if isinstance(m, nn.Upsample)] == [(56, 56), (112, 112), (224, 224)]
    head = ImageNetHead((512, 28, 28), 1000)
    convs = [m for m in head if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (128, 1, 1), (256, 3, 2), (512, 3, 2), (2048, 1, 1)]
    h = torch.randn(2, 64, 16, 16)  # a 128 px input cut at 1/8 resolution: three x2 steps
    assert ImageNetDecoder((64, 16, 16), (3, 128, 128))(h).shape == (2, 3, 128, 128)
    assert ImageNetHead((64, 16, 16), 10)(h).shape == (2, 10)


def test_imagenet_decoder_has_the_authors_parameter_count_at_resnet101_k2():
    """The authors' ImageNet decoder (convs with nn.Conv2d's default bias, also before each BatchNorm)
    has 106,699 parameters at ResNet-101's K=2 cut; without the three redundant biases (128 + 32 + 12),
    106,527. Built on the meta device: only shapes are needed."""
    learner = LocalLearner(on_meta("resnet101"), 2, "infopro-contrast", cuts="paper", input_shape=(3, 224, 224),
                           num_classes=1000)
    assert isinstance(learner.aux[0].decoder, ImageNetDecoder)
    assert count(learner.aux[0].decoder) == 106_699
    assert count(ImageNetDecoder((512, 28, 28), (3, 224, 224), conv_bias=False)) == 106_527
    convs = [m for m in learner.aux[0].decoder if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in convs)
    assert count(learner.aux[0].head) == count(ImageNetHead((512, 28, 28), 128))  # the head keeps bias=False


def test_token_nets_put_each_patch_token_on_its_own_patch():
    feature = Feature((1 + 8 * 8, 32), (3, 32, 32), TokenLayout(patch_size=4, prefix_tokens=1))
    h = torch.randn(2, 65, 32)
    grid = TokensToMap(feature)(h)
    assert grid.shape == (2, 32, 8, 8)
    assert torch.equal(grid[:, :, 2, 5], h[:, 1 + 2 * 8 + 5])
    decoder = PatchDecoder(feature).eval()
    out = decoder(h)
    assert out.shape == (2, 3, 32, 32)
    changed = h.clone()
    changed[:, 1 + 2 * 8 + 5] += 1  # the token of patch (row 2, column 5)
    diff = (decoder(changed) - out).abs().sum((0, 1)) > 0
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[8:12, 20:24] = True
    assert torch.equal(diff, expected)
    changed = h.clone()
    changed[:, 0] += 1  # the class token carries no pixels
    assert torch.equal(decoder(changed), out)
    head = TokenHead(feature, 10)
    assert head(h).shape == (2, 10)
    assert len(head.blocks) == 3 and head.conv.stride == (2, 2) and head.conv.kernel_size == (3, 3)


def test_token_layout_matches_the_patch_embedding():
    vit = tiny_vit()
    stem = vit.blocks[0]
    with torch.no_grad():
        stem.pos_embed.zero_()
        x = torch.randn(2, 3, 32, 32)
        tokens = stem(x)
        feature = Feature(tuple(tokens.shape[1:]), (3, 32, 32), vit.tokens)
        assert torch.equal(TokensToMap(feature)(tokens), stem.proj(x))


def test_token_heads_have_two_names_and_others_are_refused():
    feature = Feature((65, 32), (3, 32, 32), TokenLayout(4))
    with pytest.raises(InfoProError, match=r"head '2c2f' has no version for token features.*0c1f.*1c2f"):
        aux_family_for(feature).head("2c2f", feature, 10, AuxOptions())


# Your own model: one written with torchvision's ResNet attribute names, and a transformer laid out differently.
class TVBasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class TVResNet(nn.Module):
    def __init__(self, num_classes=4, widths=(8, 16, 16, 32)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c = widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(TVBasicBlock(c, w, stride), TVBasicBlock(w, w, 1)))
            c = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def own_resnet(model):
    return backbone_from_module(
        model,
        blocks=[["conv1", "bn1", "relu", "maxpool"], "layer1.*", "layer2.*", "layer3.*", "layer4.*"],
        head=["avgpool", nn.Flatten(1), "fc"],
        stage_sizes=[1, 2, 2, 2, 2],
    )


class Embed(nn.Module):
    def __init__(self, dim, patch, grid):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)
        self.pos = nn.Parameter(0.02 * torch.randn(1, grid * grid, dim))

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2) + self.pos


class TinyTransformer(nn.Module):
    """No class token, blocks in encoder.layers, a mean-pooling head: not the layout of our ViT."""

    def __init__(self, dim=32, num_classes=4):
        super().__init__()
        self.embed = Embed(dim, 4, 8)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(4))
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x):
        h = self.embed(x)
        for layer in self.encoder.layers:
            h = layer(h)
        return self.classifier(self.norm(h).mean(1))


def own_transformer(model):
    return backbone_from_module(model, blocks=["embed", "encoder.layers.*"],
                                head=["norm", lambda h: h.mean(1), "classifier"],
                                tokens=TokenLayout(patch_size=4, prefix_tokens=0))


@pytest.mark.parametrize("make, wrap, size", [(TVResNet, own_resnet, 64), (TinyTransformer, own_transformer, 32)])
def test_own_model_is_cut_in_place_and_trains_its_own_parameters(make, wrap, size):
    model = make()
    names = list(model.state_dict())
    backbone = wrap(model)
    x, y = torch.randn(4, 3, size, size), torch.tensor([0, 1, 2, 3])
    model.eval(), backbone.eval()
    with torch.no_grad():
        assert torch.equal(backbone(x), model(x))  # the same function
    assert {id(p) for p in backbone.parameters()} == {id(p) for p in model.parameters()}  # shared, not copied
    learner = LocalLearner(backbone, 2, "infopro-contrast", cuts="even", input_shape=(3, size, size),
                           num_classes=4, mean=(0.5,) * 3, std=(0.5,) * 3).train()
    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.1)
    learner.train_step(x, y)
    optimizer.step()
    assert list(model.state_dict()) == names
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(moved) == len(list(model.parameters()))  # every parameter of the user's model trained
    assert_gradient_isolation(LocalLearner(wrap(make()), 4, "infopro-softmax", cuts="even", lambdas=(1, 1),
                                           input_shape=(3, size, size), num_classes=4,
                                           mean=(0.5,) * 3, std=(0.5,) * 3), x, y)


def test_own_model_mistakes_are_clear():
    model = TVResNet()
    stem = ["conv1", "bn1", "relu", "maxpool"]
    with pytest.raises(InfoProError, match=r"no submodule 'layer5'.*conv1, bn1, relu, maxpool, layer1"):
        backbone_from_module(model, [stem, "layer5.*"], "fc")
    with pytest.raises(InfoProError, match=r"parameters layer4\.0\.conv1\.weight.* are in no block"):
        backbone_from_module(model, [stem, "layer1.*", "layer2.*", "layer3.*"], ["avgpool", nn.Flatten(1), "fc"])
    with pytest.raises(InfoProError, match=r"parameter 'layer1\.0\.conv1\.weight' is in blocks 1 and 2"):
        backbone_from_module(model, [stem, "layer1", "layer1.*", "layer2.*", "layer3.*", "layer4.*"], "fc")
    with pytest.raises(InfoProError, match="not the model's"):
        backbone_from_module(model, [stem, nn.Linear(2, 2)], "fc")


def quadrant_task(n, size, generator):
    """Four classes: the class decides which quadrant of the image is bright (a task about position)."""
    y = torch.randint(0, 4, (n,), generator=generator)
    x = 0.3 * torch.randn(n, 3, size, size, generator=generator)
    half = size // 2
    for i, c in enumerate(y.tolist()):
        r, s = divmod(c, 2)
        x[i, :, half * r:half * (r + 1), half * s:half * (s + 1)] += 1.0
    return x, y


def colour_task(n, size, generator):
    """Four classes: red, green, blue or all channels bright (a task about content).

    The ViT gets this one: a small ViT learns positions slowly (a few dozen steps
    of E2E training do not lift it above chance on the quadrant task).
    """
    y = torch.randint(0, 4, (n,), generator=generator)
    x = 0.3 * torch.randn(n, 3, size, size, generator=generator)
    for i, c in enumerate(y.tolist()):
        x[i, c if c < 3 else slice(None)] += 1.0
    return x, y


@pytest.mark.parametrize("family", ["densenet", "resnet", "resnext", "vit"])
def test_a_short_run_of_each_family_learns_above_chance(family):
    make, _ = FAMILIES[family]
    task = colour_task if family == "vit" else quadrant_task
    g = torch.Generator().manual_seed(0)
    x_train, y_train = task(192, 32, g)
    x_test, y_test = task(128, 32, g)
    learner = learner_for(make, 32, 2, "infopro-contrast", lambdas=None)  # the method's lambdas
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.05, momentum=0.9)
    for _ in range(3 if family == "vit" else 5):
        for i in range(0, 192, 32):
            optimizer.zero_grad(set_to_none=True)
            learner.train_step(x_train[i:i + 32], y_train[i:i + 32])
            optimizer.step()
    learner.eval()
    with torch.no_grad():
        accuracy = (learner(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.6, accuracy  # chance is 0.25


def test_describe_shows_the_new_archs_at_their_own_input_size(capsys):
    assert main(["describe", "--arch", "vit_tiny_p4", "--K", "2", "--cuts", "even", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "cuts [6] (even)" in out and "65x192" in out  # a token sequence: class token + 8x8 patches
    assert main(["describe", "--arch", "resnet18", "--K", "2", "--cuts", "even", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "cuts [4] (even)" in out and "128x28x28" in out  # 224 px by default: layer2 block 0
    with pytest.raises(SystemExit):
        main(["describe", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(arch in help_text for arch in ["resnext101_32x8d", "densenet_bc_100", "vit_small_p4"])


def test_probe_estimators_follow_token_features():
    settings = TrainSettings(epochs=2, batch_size=16)
    vit = tiny_vit().eval()
    layout = vit.tokens
    g = torch.Generator().manual_seed(0)
    images, labels = colour_task(48, 32, g)
    images = images.clamp(0, 1)
    with torch.no_grad():
        h = vit.blocks[:2](images)
    i_hx = estimate_i_hx(h[:32], images[:32], h[32:], images[32:], settings, layout)
    assert 0 < i_hx.value < 1 and i_hx.train_losses[-1] < i_hx.train_losses[0]
    maps = feature_map(h, layout, images.shape[1:])
    assert maps.shape == (48, 32, 8, 8)
    i_hy = estimate_i_hy(maps[:32], labels[:32], maps[32:], labels[32:], 4, "linear", settings)
    assert 0 <= i_hy.value <= 1


def test_bench_measures_a_vit(tmp_path, capsys):
    assert main(["bench", "--arch", "vit_tiny_p4", "--batch-size", "2", "--K", "2", "--methods", "e2e,infopro-contrast",
                 "--cuts", "even", "--steps", "1", "--device", "cpu", "--quiet", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["input_shape"] == [3, 32, 32]  # the arch's own size
    assert [(r["method"], r["K"], r["cuts"]) for r in report["rows"]] == [("e2e", 1, []), ("infopro-contrast", 2, [6])]
    assert all(r["peak_bytes"] > 0 for r in report["rows"])

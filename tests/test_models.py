import pytest
import torch
from torch import nn

import infopro
from infopro import InfoProError, build_backbone


@pytest.mark.parametrize("arch, blocks", [("resnet20", 10), ("resnet32", 16), ("resnet44", 22), ("resnet56", 28), ("resnet110", 55)])
def test_resnet_is_a_sequence_of_blocks(arch, blocks):
    model = build_backbone(arch, num_classes=7)
    assert isinstance(model.blocks, nn.Sequential)
    assert len(model.blocks) == blocks  # stem + 3n residual blocks
    x = torch.randn(2, 3, 32, 32)
    h = model.blocks(x)
    assert h.shape == (2, 64, 8, 8)
    assert model.head(h).shape == (2, 7)
    assert torch.equal(model(x), model.head(model.blocks(x)))


def test_parameter_counts_match_the_published_sizes():
    # ResNet-32 ~0.46 M, ResNet-110 ~1.73 M (1x1 projection shortcuts add ~3 K).
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert 0.46e6 <= count(build_backbone("resnet32")) < 0.47e6
    assert 1.72e6 <= count(build_backbone("resnet110")) < 1.74e6


def test_in_channels_and_stage_positions():
    model = build_backbone("resnet32", num_classes=10, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert model.stage_sizes == [1, 5, 5, 5]
    assert model.block_index(0, 0) == 0
    assert model.block_index(1, 2) == 3
    assert model.block_index(3, 4) == 15
    with pytest.raises(IndexError):
        model.block_index(1, 5)


def test_initialisation():
    model = build_backbone("resnet32")
    conv = model.blocks[1].conv1
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() - (2 / fan_out) ** 0.5) < 0.02
    bn = model.blocks[1].bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_projection_shortcuts_only_where_the_shape_changes():
    model = build_backbone("resnet20")
    kinds = [type(b.shortcut).__name__ for b in model.blocks[1:]]
    assert kinds == ["Identity"] * 3 + ["Sequential", "Identity", "Identity"] * 2


def test_unknown_arch_lists_the_choices():
    with pytest.raises(InfoProError, match=r"unknown architecture 'resnet33'.*resnet110.*resnet32"):
        build_backbone("resnet33")


def test_registry_adds_an_architecture_in_one_line():
    registry = infopro.Registry("widget")
    registry.add("a", 1)
    assert registry.get("a") == 1 and "a" in registry
    with pytest.raises(KeyError):
        registry.add("a", 2)

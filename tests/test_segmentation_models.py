"""Segmentation models: DeepLabV3/FCN on dilated ResNets (mmseg's ResNetV1c), `segmentation_model`, and
loading torchvision/timm/mmseg ResNet weights. Full-size nets are checked on the meta device; forwards use
ResNet-18-sized or narrower nets on 64x64 inputs."""

import pytest
import torch
from torch import nn

from infopro import InfoProError, build_backbone
from infopro.local import feature_shapes, resolve_cuts
from infopro.models import SequentialBackbone, native_input_shape
from infopro.models.pretrained import load_backbone_weights
from infopro.models.resnet_imagenet import imagenet_resnet
from infopro.models.segmentation import ASPPHead, FCNHead, dilated_resnet, fcn_aux_head, segmentation_model
from infopro.models.vit import vision_transformer


def on_meta(arch, num_classes=19):
    with torch.device("meta"):
        return build_backbone(arch, num_classes)


def stages(backbone):
    """The residual blocks of each stage (stage 1..4)."""
    ends = [sum(backbone.stage_sizes[:s]) for s in range(len(backbone.stage_sizes) + 1)]
    return [list(backbone.blocks[ends[s]:ends[s + 1]]) for s in range(1, len(backbone.stage_sizes))]


@pytest.mark.parametrize("head, head_type", [("aspp", ASPPHead), ("fcn", FCNHead)])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_logits_come_at_the_feature_resolution(head, head_type, output_stride):
    model = dilated_resnet((2, 2, 2, 2), False, 4, output_stride=output_stride, head=head, widths=(16, 16, 32, 32))
    assert isinstance(model.head, head_type)
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 4, 64 // output_stride, 64 // output_stride)
    out.sum().backward()  # train mode, batch 2: the pooled branch's BatchNorm has two values per channel
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model.head(model.blocks(x)))


def test_registered_resnet18_segmentors_run_at_64px():
    for arch in ("deeplabv3_resnet18", "fcn_resnet18"):
        model = build_backbone(arch, 3).eval()
        with torch.no_grad():
            assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3, 8, 8)


@pytest.mark.parametrize("arch", ["deeplabv3_resnet50", "deeplabv3_resnet101"])
def test_dilations_and_strides_per_stage_at_output_stride_8(arch):
    backbone = on_meta(arch)
    stem = backbone.blocks[0]
    convs = [m for m in stem if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (3, 3), (2, 2)), (32, (3, 3), (1, 1)), (64, (3, 3), (1, 1))]
    assert isinstance(stem[-1], nn.MaxPool2d)
    # (stride, dilation) of each block's 3x3 conv: layer3/4 keep their stride 1, their first blocks
    # take half the stage's dilation (mmseg's contract_dilation).
    expected = [(1, [1, 1, 1]), (2, [1, 1]), (1, [1, 2]), (1, [2, 4])]
    for blocks, (stride, (first, rest)) in zip(stages(backbone), [(s, (d[0], d[-1])) for s, d in expected]):
        assert blocks[0].conv2.stride == (stride, stride) and blocks[0].conv2.dilation == (first, first)
        assert blocks[0].conv2.padding == (first, first)
        assert all(b.conv2.stride == (1, 1) and b.conv2.dilation == (rest, rest) for b in blocks[1:])
    assert backbone.head.dilations == (1, 12, 24, 36)
    assert backbone.head.bottleneck.conv.out_channels == 512 and backbone.head.conv_seg.out_channels == 19


def test_output_stride_16_layout_and_aspp_dilations():
    with torch.device("meta"):
        backbone = dilated_resnet((3, 4, 6, 3), True, 19, output_stride=16)
    layer3, layer4 = stages(backbone)[2:]
    assert layer3[0].conv2.stride == (2, 2) and layer3[0].shortcut[0].stride == (2, 2)
    assert all(b.conv2.dilation == (1, 1) for b in layer3)
    assert layer4[0].conv2.dilation == (1, 1) and all(b.conv2.dilation == (2, 2) for b in layer4[1:])
    assert backbone.head.dilations == (1, 6, 12, 18)
    assert tuple(feature_shapes(backbone.blocks, (3, 512, 512))[-1]) == (2048, 32, 32)
    with pytest.raises(InfoProError, match="output stride must be one of"):
        dilated_resnet((1, 1, 1, 1), False, 2, output_stride=4)


def test_basic_blocks_dilate_their_first_conv_only_as_mmseg():
    layer4 = stages(on_meta("deeplabv3_resnet18"))[3]
    assert [b.conv1.dilation for b in layer4] == [(2, 2), (4, 4)]
    assert [b.conv2.dilation for b in layer4] == [(1, 1), (1, 1)]


def test_torchvision_stem_option():
    with torch.device("meta"):
        backbone = dilated_resnet((3, 4, 23, 3), True, 19, deep_stem=False)
    conv = backbone.blocks[0][0]
    assert conv.kernel_size == (7, 7) and conv.stride == (2, 2) and conv.out_channels == 64


def test_resnet101_blocks_stages_the_papers_cut_and_the_aux_tap():
    backbone = on_meta("deeplabv3_resnet101")
    assert backbone.stage_sizes == [1, 3, 4, 23, 3] and len(backbone.blocks) == 34
    # The IJCV paper's K=2 cut: after the first 13 blocks of layer3.
    assert backbone.block_index(3, 12) == 1 + 3 + 4 + 13 - 1 == 20
    assert resolve_cuts([20], backbone, 2) == [20]
    assert backbone.aux_taps == {"fcn": 30} and backbone.block_index(3, 22) == 30
    assert native_input_shape("deeplabv3_resnet101") == (3, 512, 512)
    shapes = feature_shapes([*backbone.blocks, backbone.head], native_input_shape("deeplabv3_resnet101"))
    assert tuple(shapes[20]) == tuple(shapes[30]) == (1024, 64, 64)  # layer3 at 1/8
    assert tuple(shapes[-2]) == (2048, 64, 64) and tuple(shapes[-1]) == (19, 64, 64)


@pytest.mark.parametrize("arch, tap, channels", [("deeplabv3_resnet50", 13, 1024), ("fcn_resnet50", 13, 1024),
                                                 ("deeplabv3_resnet18", 6, 256)])
def test_aux_tap_is_the_last_block_of_layer3(arch, tap, channels):
    backbone = on_meta(arch)
    assert backbone.aux_taps == {"fcn": tap} and tap == sum(backbone.stage_sizes[:4]) - 1
    assert feature_shapes(backbone.blocks[:tap + 1], (3, 512, 512))[-1][0] == channels


def test_fcn_heads_as_mmseg():
    aux = fcn_aux_head(1024, 19)
    assert len(aux.convs) == 1 and aux.conv_cat is None
    assert aux.convs[0].conv.kernel_size == (3, 3) and aux.convs[0].conv.out_channels == 256
    assert isinstance(aux.dropout, nn.Dropout2d) and aux.dropout.p == 0.1
    assert (aux.conv_seg.in_channels, aux.conv_seg.out_channels, aux.conv_seg.kernel_size) == (256, 19, (1, 1))
    assert abs(aux.conv_seg.weight.std().item() - 0.01) < 0.002 and torch.all(aux.conv_seg.bias == 0)
    assert fcn_aux_head(32, 5)(torch.randn(2, 32, 8, 8)).shape == (2, 5, 8, 8)
    decode = on_meta("fcn_resnet101").head  # mmseg's fcn_r101-d8: two convs to 512, then a conv over [input, them]
    assert len(decode.convs) == 2 and decode.convs[1].conv.out_channels == 512
    assert decode.conv_cat.conv.in_channels == 2048 + 512


def test_segmentation_model_turns_a_cifar_resnet_into_a_segmentor():
    backbone = build_backbone("resnet32", 10)
    model = segmentation_model(backbone, 3)
    assert isinstance(model.head, ASPPHead) and model.head.image_pool[1].conv.in_channels == 64
    assert [id(b) for b in model.blocks] == [id(b) for b in backbone.blocks]  # shared, not copied
    assert model.stage_sizes == backbone.stage_sizes and model.arch == "resnet32" and model.image_size == 32
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3, 8, 8)
    fcn = segmentation_model(build_backbone("resnet18", 10), 4, head="fcn", channels=32)
    assert fcn.head.convs[0].conv.out_channels == 32
    assert fcn.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 4, 2, 2)


def test_segmentation_model_refuses_features_that_are_not_maps():
    with pytest.raises(InfoProError, match="needs .*feature maps.*token sequences"):
        segmentation_model(vision_transformer(32, 4, 32, 2, 2, 4), 3)
    pooled = SequentialBackbone([nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()], nn.Linear(8, 2))
    with pytest.raises(InfoProError, match=r"\(C, H, W\) feature maps; this backbone has features of shape \(8,\)"):
        segmentation_model(pooled, 3)
    with pytest.raises(InfoProError, match="unknown decode head 'asp'; did you mean 'aspp'"):
        segmentation_model(build_backbone("resnet20"), 3, head="asp")


def test_aux_taps_are_checked_and_default_to_none():
    assert build_backbone("resnet20").aux_taps == {}
    with pytest.raises(ValueError, match="aux tap 'fcn' reads block 3, but there are 2 blocks"):
        SequentialBackbone([nn.Identity(), nn.Identity()], nn.Identity(), aux_taps={"fcn": 3})


# --- weights from a file ------------------------------------------------------------------------------------------

class TVBlock(nn.Module):
    """torchvision's BasicBlock names: conv1, bn1, conv2, bn2, downsample."""

    def __init__(self, a, b, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(a, b, 3, stride, 1, bias=False), nn.BatchNorm2d(b)
        self.conv2, self.bn2 = nn.Conv2d(b, b, 3, 1, 1, bias=False), nn.BatchNorm2d(b)
        self.relu = nn.ReLU()
        self.downsample = (nn.Sequential(nn.Conv2d(a, b, 1, stride, bias=False), nn.BatchNorm2d(b))
                           if stride != 1 or a != b else None)

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TVResNet(nn.Module):
    """torchvision's ResNet key names (conv1, bn1, layer1.0.conv1, ..., fc) at small widths."""

    def __init__(self, widths=(8, 8, 16, 32), layers=(1, 1, 1, 1), num_classes=7):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0])
        self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        a = widths[0]
        for s, (w, n) in enumerate(zip(widths, layers), start=1):
            setattr(self, f"layer{s}", nn.Sequential(*(TVBlock(a if i == 0 else w, w, 2 if s > 1 and i == 0 else 1)
                                                       for i in range(n))))
            a = w
        self.fc = nn.Linear(a, num_classes)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def randomised(model):
    """Random weights and BatchNorm statistics, so that a copied tensor cannot equal an initial one by chance."""
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5)
    return model


def test_torchvision_weights_load_into_our_resnet_with_the_same_function():
    tv = randomised(TVResNet()).eval()
    ours = imagenet_resnet((1, 1, 1, 1), False, 3, widths=(8, 8, 16, 32)).eval()
    report = load_backbone_weights(ours, tv.state_dict())
    assert report.ignored == ["fc.weight", "fc.bias"] and not report.unused and not report.mismatched
    assert report.missing == ["head.2.weight", "head.2.bias"]  # our classifier: another task's classes
    assert torch.equal(ours.blocks[2].shortcut[0].weight, tv.layer2[0].downsample[0].weight)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours.blocks(x), tv.features(x))


def test_weight_report_lists_mismatches_missing_and_unused_keys():
    state = randomised(TVResNet()).state_dict()
    state["layer3.0.conv2.weight"] = torch.zeros(16, 16, 1, 1)  # deliberately the wrong shape
    del state["layer4.0.bn1.running_var"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    model = dilated_resnet((1, 1, 1, 1), False, 3, deep_stem=False, widths=(8, 8, 16, 32))
    before = model.blocks[3].conv2.weight.clone()
    report = load_backbone_weights(model, {f"module.{k}": v for k, v in state.items()})
    assert report.mismatched == [("blocks.3.conv2.weight", "layer3.0.conv2.weight", (16, 16, 3, 3), (16, 16, 1, 1))]
    assert torch.equal(model.blocks[3].conv2.weight, before)  # left as initialised
    assert "blocks.4.bn1.running_var" in report.missing and "layer5.0.conv1.weight" in report.unused
    assert all(k.startswith("head.") for k in report.missing if k != "blocks.4.bn1.running_var")
    assert torch.equal(model.blocks[1].conv1.weight, state["layer1.0.conv1.weight"])
    assert torch.equal(model.blocks[0][1].running_mean, state["bn1.running_mean"])
    lines = report.summary().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"loaded {len(report.matched)} of the model's ")
    assert "fc.weight, fc.bias set aside" in lines[0]
    assert lines[1].startswith("1 of another shape, left as initialised (blocks.3.conv2.weight (16, 16, 3, 3) vs "
                               "layer3.0.conv2.weight (16, 16, 1, 1)); ")
    assert "not in the file, left as initialised (" in lines[1]
    assert lines[1].endswith("1 of the file's unused (layer5.0.conv1.weight)")


def test_mmseg_and_timm_deep_stems_load():
    source = randomised(dilated_resnet((1, 1, 1, 1), True, 5, widths=(8, 8, 16, 16)))
    # mmseg's ResNetV1c names: backbone.stem.0..7, backbone.layerS.J..., downsample; heads beside the backbone.
    mmseg = {}
    for key, value in source.state_dict().items():
        if key.startswith("blocks.0."):
            mmseg["backbone.stem." + key[len("blocks.0."):]] = value
        elif key.startswith("blocks."):
            index, rest = key.split(".", 2)[1:]
            stage = next(s for s in range(1, 5) if int(index) < sum(source.stage_sizes[:s + 1]))
            mmseg[f"backbone.layer{stage}.{int(index) - sum(source.stage_sizes[:stage])}."
                  + rest.replace("shortcut.", "downsample.")] = value
        else:
            mmseg["decode_head." + key[len("head."):]] = value
    mmseg["auxiliary_head.conv_seg.weight"] = torch.zeros(5, 4, 1, 1)
    target = dilated_resnet((1, 1, 1, 1), True, 3, widths=(8, 8, 16, 16))
    report = load_backbone_weights(target, {"meta": {}, "state_dict": mmseg})
    assert [m[0] for m in report.mismatched] == ["head.conv_seg.weight", "head.conv_seg.bias"]  # 5 vs 3 classes
    assert report.unused == ["auxiliary_head.conv_seg.weight"] and not report.missing
    expected = source.state_dict()
    assert all(torch.equal(t, expected[k]) for k, t in target.state_dict().items() if not k.startswith("head.conv_seg"))
    # timm's deep stem: conv1.0/.1/.3/.4/.6 and its last BatchNorm as bn1.
    timm = {f"conv1.{i}.{k.split('.', 3)[3]}": v for i in (0, 1, 3, 4, 6)
            for k, v in source.state_dict().items() if k.startswith(f"blocks.0.{i}.")}
    timm.update({f"bn1.{k.split('.', 3)[3]}": v for k, v in source.state_dict().items() if k.startswith("blocks.0.7.")})
    target = dilated_resnet((1, 1, 1, 1), True, 3, widths=(8, 8, 16, 16))
    report = load_backbone_weights(target, timm)
    assert len(report.matched) == len([k for k in timm]) and not report.unused
    assert torch.equal(target.blocks[0][7].weight, source.blocks[0][7].weight)
    assert torch.equal(target.blocks[0][6].weight, source.blocks[0][6].weight)


def test_weights_that_fit_nothing_are_refused_and_nothing_is_loaded():
    vit = vision_transformer(32, 4, 32, 2, 2, 4)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    with pytest.raises(InfoProError, match=r"none of the file's \d+ tensors fit this backbone"):
        load_backbone_weights(vit, TVResNet().state_dict())
    narrow = build_backbone("resnet20")  # the same names, but every shape differs from ImageNet widths' but counters
    with pytest.raises(InfoProError, match="give a ResNet state dict from torchvision, timm or mmseg"):
        load_backbone_weights(narrow, TVResNet(widths=(64, 64, 128, 128), layers=(3, 3, 3, 1)).state_dict())
    assert all(torch.equal(v, before[k]) for k, v in vit.state_dict().items())

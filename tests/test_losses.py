import math

import pytest
import torch
import torch.nn.functional as F

from infopro import InfoProError
from infopro.local import AuxOptions, Decoder, build_head, reconstruction_loss, supervised_contrastive_loss

# Four 2-d embeddings: z0 = z1 = (1,0), z2 = (0,1), z3 = (-1,0); labels 0,0,1,1.
Z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
LABELS = torch.tensor([0, 0, 1, 1])


def test_supcon_by_hand():
    # temperature 1. Anchor 0: positive 1 (dot 1), others dots {1, 0, -1}:
    #   l0 = -(1 - log(e + 1 + 1/e)); anchor 1 the same.
    # Anchor 2: positive 3 (dot 0), others dots {0, 0, 0}: l2 = log 3.
    # Anchor 3: positive 2 (dot 0), others dots {-1, -1, 0}: l3 = log(1 + 2/e).
    e = math.e
    expected = (2 * (math.log(e + 1 + 1 / e) - 1) + math.log(3) + math.log(1 + 2 / e)) / 4
    assert expected == pytest.approx(0.61632, abs=1e-5)
    assert supervised_contrastive_loss(Z, LABELS, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    # The embedding is L2-normalised first: scale does not matter.
    assert supervised_contrastive_loss(3 * Z, LABELS, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_supcon_temperature_divides_the_dot_products():
    t = 0.5  # dots become 2, 0, -2
    e2 = math.exp(2)
    expected = (2 * (math.log(e2 + 1 + 1 / e2) - 2) + math.log(3) + math.log(1 + 2 / e2)) / 4
    assert supervised_contrastive_loss(Z, LABELS, temperature=t).item() == pytest.approx(expected, rel=1e-6)


def test_supcon_anchors_without_positives_count_zero_in_the_mean_over_all_anchors():
    # Labels 0,0,1,2: classes 1 and 2 appear once. Only anchors 0 and 1 have a positive; both give
    # log(e + 1 + 1/e) - 1 (as in test_supcon_by_hand). The authors' losses.py (89-97) averages over ALL
    # four anchors, anchors 2 and 3 contributing 0: (2 * (log(e + 1 + 1/e) - 1) + 0 + 0) / 4.
    one_anchor = math.log(math.e + 1 + 1 / math.e) - 1
    labels = torch.tensor([0, 0, 1, 2])
    loss = supervised_contrastive_loss(Z, labels, temperature=1.0)
    assert loss.item() == pytest.approx(2 * one_anchor / 4, rel=1e-6)
    # The named alternative averages over the two anchors that have a positive.
    positive = supervised_contrastive_loss(Z, labels, temperature=1.0, mean="anchors-with-positive")
    assert positive.item() == pytest.approx(one_anchor, rel=1e-6)
    for mean in ("all-anchors", "anchors-with-positive"):
        assert supervised_contrastive_loss(Z, torch.tensor([0, 1, 2, 3]), 1.0, mean).item() == 0.0
    # Every label at least twice (as in test_supcon_by_hand): the two means are the same loss.
    assert supervised_contrastive_loss(Z, LABELS, 1.0, "anchors-with-positive").item() == pytest.approx(
        supervised_contrastive_loss(Z, LABELS, 1.0).item(), rel=1e-7)
    with pytest.raises(InfoProError, match="supcon mean must be one of"):
        supervised_contrastive_loss(Z, LABELS, 1.0, "positives")


def test_supcon_equals_the_authors_equation_with_a_class_seen_once():
    """The authors' SupConLoss (losses.py 68-97, one view, contrast_mode 'all'), restated: logits minus their
    row max, self-contrast masked out of the denominator, mean log-probability over positives (an empty set
    divides by 1), -(t / base_t) times that, mean over all anchors."""
    g = torch.Generator().manual_seed(3)
    features = F.normalize(torch.randn(6, 5, generator=g), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])  # class 2 appears once
    t = base = 0.07
    mask = (labels[:, None] == labels[None, :]).float()
    logits = features @ features.T / t
    logits = logits - logits.max(1, keepdim=True).values
    not_self = 1 - torch.eye(6)
    mask = mask * not_self
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True))
    mask_sum = mask.sum(1)
    mask_sum[mask_sum == 0] += 1
    expected = (-(t / base) * (mask * log_prob).sum(1) / mask_sum).mean()
    assert supervised_contrastive_loss(features, labels, t).item() == pytest.approx(expected.item(), rel=1e-5)


def test_supcon_gradient_is_finite():
    z = torch.randn(16, 8, requires_grad=True)
    supervised_contrastive_loss(z, torch.randint(0, 3, (16,)), 0.07).backward()
    assert torch.isfinite(z.grad).all()


def test_reconstruction_loss_is_bce_of_the_sigmoid():
    # sigmoid(0) = 1/2, so BCE is log 2 whatever the target.
    image = torch.rand(2, 3, 4, 4)
    assert reconstruction_loss(torch.zeros(2, 3, 4, 4), image).item() == pytest.approx(math.log(2), rel=1e-6)
    # One pixel, logit 2, target 1: -log(sigmoid(2)) = log(1 + e^-2).
    assert reconstruction_loss(torch.full((1, 1, 1, 1), 2.0), torch.ones(1, 1, 1, 1)).item() == pytest.approx(
        math.log(1 + math.exp(-2)), rel=1e-6
    )
    logits = torch.randn(2, 3, 8, 8)
    assert reconstruction_loss(logits, image.repeat(1, 1, 2, 2)).item() == pytest.approx(
        F.binary_cross_entropy(torch.sigmoid(logits), image.repeat(1, 1, 2, 2)).item(), rel=1e-5
    )


def test_decoder_upsamples_to_the_image():
    decoder = Decoder((64, 8, 8), (3, 32, 32))
    out = decoder(torch.randn(2, 64, 8, 8))
    assert out.shape == (2, 3, 32, 32)
    assert decoder.net[0].out_channels == 12
    assert Decoder((16, 32, 32), (3, 32, 32), widen=2).net[0].out_channels == 24
    rec = decoder.reconstruct(torch.randn(2, 64, 8, 8))
    assert rec.min() >= 0 and rec.max() <= 1


@pytest.mark.parametrize(
    "channels, size, conv_out, stride",
    [(16, 32, 32, 2), (32, 16, 64, 2), (64, 8, 64, 1)],
)
def test_1c2f_head_shapes(channels, size, conv_out, stride):
    head = build_head("1c2f", (channels, size, size), 10, AuxOptions())
    conv, linear1, linear2 = head[0], head[5], head[7]
    assert (conv.out_channels, conv.stride[0]) == (conv_out, stride)
    assert linear1.out_features == 128 and linear2.out_features == 10
    assert head(torch.randn(3, channels, size, size)).shape == (3, 10)


@pytest.mark.parametrize("name, convs, linears", [("0c1f", 0, 1), ("0c2f", 0, 2), ("1c1f", 1, 1), ("1c3f", 1, 3), ("2c2f", 2, 2)])
def test_head_configs(name, convs, linears):
    head = build_head(name, (32, 16, 16), 5, AuxOptions(widen=2, feature_dim=32))
    layers = list(head)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in layers) == convs
    assert sum(isinstance(m, torch.nn.Linear) for m in layers) == linears
    assert head(torch.randn(2, 32, 16, 16)).shape == (2, 5)
    if linears > 1:
        assert layers[-1].in_features == 64  # feature_dim * widen


def test_unknown_head_and_token_features():
    with pytest.raises(InfoProError, match=r"unknown auxiliary head '3c9f'.*1c2f"):
        build_head("3c9f", (16, 32, 32), 10, AuxOptions())
    with pytest.raises(InfoProError, match=r"needs a feature map"):
        build_head("1c2f", (65, 192), 10, AuxOptions())

"""Segmentation metrics (ConfusionSums, segmentation_result) on a 3-class 4x4 example checked by hand, and the
per-class IoU bar chart."""

import math

import pytest
import torch

from infopro.plots import write_class_iou_png
from infopro.segment_metrics import ConfusionSums, segmentation_result

I = 255  # ignore index
TARGET = torch.tensor([[0, 0, 0, 1],
                       [0, 0, 1, 1],
                       [2, 2, 1, I],
                       [2, 2, I, I]])
PRED = torch.tensor([[0, 0, 1, 1],
                     [0, 2, 1, 1],
                     [2, 2, 1, 0],
                     [0, 2, 1, 1]])
# By hand, over the 13 labelled pixels (rows: true class, columns: predicted class):
CONFUSION = [[3, 1, 1],
             [0, 4, 0],
             [1, 0, 3]]
# IoU = TP / (row + column - TP): 3/(5+4-3), 4/(4+5-4), 3/(4+4-3)
IOU = [0.5, 0.8, 0.6]


def logits_of(pred: torch.Tensor, classes: int = 3) -> torch.Tensor:
    """(1, K, H, W) logits whose argmax is `pred`: log 2 at the predicted class, 0 elsewhere, so that a pixel's
    cross-entropy is log(2 + K - 1) - log 2 when right and log(2 + K - 1) when wrong."""
    return torch.nn.functional.one_hot(pred, classes).permute(2, 0, 1)[None].float() * math.log(2)


def test_three_classes_by_hand():
    sums = ConfusionSums(3, ignore_index=I)
    sums.add(logits_of(PRED), TARGET[None])
    share = sums.totals()
    assert share["confusion"] == CONFUSION and share["pixels"] == 13
    # 10 right (log 4 - log 2 each), 3 wrong (log 4 each) = 16 log 2
    assert share["loss"] == pytest.approx(16 * math.log(2))
    result = segmentation_result([share], seconds=1.5)
    assert result["class_iou"] == pytest.approx(IOU)
    assert result["miou"] == pytest.approx(1.9 / 3)
    assert result["pixel_accuracy"] == pytest.approx(10 / 13) and result["accuracy"] == result["pixel_accuracy"]
    assert result["mean_accuracy"] == pytest.approx((3 / 5 + 4 / 4 + 3 / 4) / 3)
    assert result["loss"] == pytest.approx(16 * math.log(2) / 13)
    assert result["seconds"] == 1.5


def test_a_class_in_neither_masks_nor_predictions_is_none_and_left_out_of_the_mean():
    sums = ConfusionSums(4, ignore_index=I)
    sums.add(logits_of(PRED, 4), TARGET[None])
    result = segmentation_result([sums.totals()], seconds=0.0)
    assert result["class_iou"][:3] == pytest.approx(IOU) and result["class_iou"][3] is None
    assert result["miou"] == pytest.approx(1.9 / 3)
    assert result["mean_accuracy"] == pytest.approx((3 / 5 + 4 / 4 + 3 / 4) / 3)
    # a class predicted but never true has IoU 0 and counts in the mean; not in mean accuracy (no true pixel)
    pred = PRED.clone()
    pred[0, 0] = 3
    sums = ConfusionSums(4, ignore_index=I)
    sums.add(logits_of(pred, 4), TARGET[None])
    result = segmentation_result([sums.totals()], seconds=0.0)
    # class 0: TP 2, 5 true, 3 predicted -> 2 / (5 + 3 - 2)
    assert result["class_iou"] == pytest.approx([1 / 3, 0.8, 0.6, 0.0])
    assert result["miou"] == pytest.approx((1 / 3 + 0.8 + 0.6 + 0.0) / 4)
    assert result["mean_accuracy"] == pytest.approx((2 / 5 + 1 + 3 / 4) / 3)


def test_shares_of_several_processes_and_batches_add_up_to_one_evaluation():
    logits = torch.randn(4, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    masks = torch.randint(0, 3, (4, 5, 6), generator=torch.Generator().manual_seed(1))
    masks[0, 0, :] = I
    whole = ConfusionSums(3, ignore_index=I)
    whole.add(logits, masks)
    first, second = ConfusionSums(3, ignore_index=I), ConfusionSums(3, ignore_index=I)
    first.add(logits[:1], masks[:1])
    first.add(logits[1:2], masks[1:2])
    second.add(logits[2:], masks[2:])
    together = segmentation_result([whole.totals()], 1.0)
    apart = segmentation_result([first.totals(), second.totals()], 1.0)
    assert apart["class_iou"] == pytest.approx(together["class_iou"])
    for key in ("miou", "pixel_accuracy", "mean_accuracy", "loss"):
        assert apart[key] == pytest.approx(together[key]), key
    assert whole.totals()["pixels"] == 4 * 5 * 6 - 6
    # the loss is cross-entropy over the labelled pixels only
    expected = torch.nn.functional.cross_entropy(logits, masks, ignore_index=I, reduction="sum")
    assert whole.totals()["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_labels_outside_the_classes_and_another_ignore_index_are_not_counted():
    target = TARGET.clone()
    target[target == I] = 7  # out of range: not counted, as the ignore index is not
    target[0, 0] = -1  # now the ignore index
    sums = ConfusionSums(3, ignore_index=-1)
    sums.add(logits_of(PRED), target[None])
    share = sums.totals()
    assert share["pixels"] == 12
    assert share["confusion"] == [[2, 1, 1], [0, 4, 0], [1, 0, 3]]


def test_no_labelled_pixel_gives_zeros_not_nans():
    sums = ConfusionSums(3)
    sums.add(logits_of(PRED), torch.full((1, 4, 4), I))
    result = segmentation_result([sums.totals()], 0.0)
    assert result["class_iou"] == [None, None, None]
    assert result["miou"] == 0.0 and result["pixel_accuracy"] == 0.0 and result["loss"] == 0.0


def test_logits_not_at_the_mask_size_are_refused():
    sums = ConfusionSums(3)
    with pytest.raises(ValueError, match=r"logits \(1, 3, 2, 2\) do not fit masks \(1, 4, 4\)"):
        sums.add(torch.zeros(1, 3, 2, 2), TARGET[None])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the host syncs of a CUDA device")
def test_adding_a_batch_on_cuda_does_not_sync_with_the_host():
    sums = ConfusionSums(3, ignore_index=I, device="cuda")
    logits, masks = logits_of(PRED).cuda(), TARGET[None].cuda()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sums.add(logits, masks)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert sums.totals()["confusion"] == CONFUSION


def test_class_iou_bar_chart_is_written(tmp_path):
    path = write_class_iou_png([0.5, None, 0.75], ["road", "sky", "car"], tmp_path / "class_iou.png",
                               title="deeplabv3 · infopro K=2")
    assert path == tmp_path / "class_iou.png"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="2 IoUs for 3 classes"):
        write_class_iou_png([0.5, 0.5], ["road", "sky", "car"], tmp_path / "x.png")

"""Semantic segmentation: a class index per pixel (masks; `ignore_index` marks unlabelled pixels), a network whose
output is a (classes, h, w) map (DeepLabV3, FCN: `infopro.models.segmentation`), per-pixel cross-entropy, and mean
IoU from one confusion matrix. As the authors' MMSegmentation fork (docs/segmentation.md):

- the last piece's loss is the decode head's cross-entropy (logits resized bilinearly, align_corners=False, to the
  mask) plus `aux_weight` (0.4) times the FCN auxiliary head's on the output of stage 3, where that block lies in
  the last piece;
- a local piece's task term is the paper's dense head (conv3x3 -> 512, BN, ReLU, dropout, conv1x1) with its
  logits resized with align_corners=True and the cross-entropy averaged over labelled pixels; its decoder is
  the paper's dense decoder (the `dense-map` auxiliary-net family);
- training batches are random rescale 0.5-2, a crop of `--crop-size` that no class fills beyond 75 %, a flip and
  photometric distortion (`infopro.data.segmentation`); evaluation runs the network on whole images (the
  authors' configs), or window by window where they are larger than the crop (`--seg-eval slide`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DATASETS
from ..data.segmentation import SegmentationData, SegmentationOptions, make_segmentation_loader, open_segmentation
from ..errors import InfoProError
from ..local.dense_losses import local_pixel_loss
from ..local.dense_objective import SegmentationLastObjective
from ..local.objective import Objective
from ..models.segmentation import fcn_aux_head
from ..segment_metrics import ConfusionSums, segmentation_result
from ..sliding_window import sliding_window_logits
from .base import TASKS, Loaders, Task

if TYPE_CHECKING:
    from ..local.methods.base import LocalMethod, PieceContext

# Methods whose per-piece objective is a head + cross-entropy (and E2E): what the authors' segmentation code has.
SEGMENT_METHODS = ("e2e", "greedy", "dgl", "infopro-softmax")
IGNORED_SHARE = 0.1  # unlabelled pixels in a synthetic mask (Cityscapes' void pixels: of that order)
SLIDE_OVERLAP = 2 / 3  # sliding-window stride as a share of the crop (mmseg's 769-crop configs: 513 of 769)
# whole: the network on the whole image (the authors' DeepLabV3 Cityscapes configs, test_cfg mode='whole');
# slide: window by window where the image is larger than the crop (mmseg's 769x769 configs).
SEG_EVALUATIONS = ("whole", "slide")


class Segmentation(Task):
    """A class index per pixel; mean IoU is the score the best epoch is picked on."""

    name = "segment"
    description = "semantic segmentation: a class per pixel (image + mask pairs), mean IoU"
    target = "mask"
    dense = True
    score = "miou"
    score_label = "mean IoU"
    default_arch = "deeplabv3_resnet18"
    default_method = "infopro-softmax"
    any_image_size = True
    # The paper's Table 5 (IJCV): DeepLabV3-R101 on Cityscapes crops, 4 images per GPU (8 on 2 GPUs), InfoPro* K=2.
    bench_defaults = {"arch": "deeplabv3_resnet101", "batch_size": 4, "input_shape": [3, 512, 1024],
                      "num_classes": 19, "K": [2, 4], "methods": "e2e,checkpoint,infopro-softmax",
                      "cuts": "paper,balanced"}

    def __init__(self, ignore_index: int = 255, aux_weight: float = 0.4,
                 crop_size: Sequence[int] | None = None, evaluation: str = "whole") -> None:
        if not 0 <= ignore_index <= 65535:
            raise InfoProError(f"--ignore-index must be a mask value in [0, 65535], got {ignore_index}")
        if aux_weight < 0:
            raise InfoProError(f"--seg-aux-weight must be >= 0 (0: off), got {aux_weight}")
        self.ignore_index, self.aux_weight = int(ignore_index), float(aux_weight)
        self.crop_size = tuple(int(s) for s in crop_size) if crop_size is not None else None
        if evaluation not in SEG_EVALUATIONS:
            raise InfoProError(f"--seg-eval must be one of {', '.join(SEG_EVALUATIONS)}, got {evaluation!r}")
        self.evaluation = evaluation

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Segmentation":
        """From `infopro train`'s flags, or a command's subset of them (`infopro bench` has no data: no crop)."""
        return cls(args.ignore_index, args.seg_aux_weight, getattr(args, "crop_size", None),
                   getattr(args, "seg_eval", "whole"))

    def settings(self) -> dict[str, Any]:
        return {"ignore_index": self.ignore_index}

    # --- the learning side (`LocalTask`) ---------------------------------------------------------------------
    def check_output(self, output_shape: Sequence[int], num_classes: int) -> None:
        if len(output_shape) != 3 or output_shape[0] != num_classes:
            raise InfoProError(
                f"segmentation needs a network whose output is a ({num_classes}, h, w) map of class logits, this one "
                f"gives {tuple(output_shape)}; use a segmentation architecture (deeplabv3_resnet18/50/101, "
                f"fcn_resnet18/50/101) or infopro.models.segmentation_model(backbone, num_classes)")

    def refusal(self, method: "LocalMethod") -> str | None:
        if method.name in SEGMENT_METHODS:
            return None
        return (f"method {method.name!r} has no per-pixel objective (its local loss is defined per image in its "
                f"authors' code); for segmentation use one of {', '.join(SEGMENT_METHODS)}")

    def task_loss(self, name: str, ctx: "PieceContext") -> nn.Module:
        if name != "cross-entropy":
            raise InfoProError(f"segmentation trains local heads with a per-pixel cross-entropy, not {name!r}; "
                               f"use --task-loss cross-entropy (or a cross-entropy method such as infopro-softmax)")
        return local_pixel_loss(self.ignore_index)

    def last_objective(self, ctx: "PieceContext") -> Objective:
        tap = ctx.taps.get("fcn")
        # The FCN auxiliary head only where its block runs in the last piece (else its loss would cross a cut).
        use_tap = self.aux_weight > 0 and tap is not None and ctx.start is not None and tap >= ctx.start
        if not use_tap:
            return SegmentationLastObjective(ignore_index=self.ignore_index, aux_weight=self.aux_weight)
        channels = ctx.block_shapes[tap][0]
        return SegmentationLastObjective(ctx.blocks[tap], fcn_aux_head(channels, ctx.num_classes), self.aux_weight,
                                         self.ignore_index)

    def example_targets(self, batch: int, input_shape: Sequence[int], num_classes: int,
                        generator: torch.Generator) -> torch.Tensor:
        """Masks (batch, H, W) of random classes with about `IGNORED_SHARE` of the pixels `ignore_index`."""
        _, height, width = input_shape
        masks = torch.randint(0, num_classes, (batch, height, width), generator=generator)
        ignored = torch.rand(batch, height, width, generator=generator) < IGNORED_SHARE
        return masks.masked_fill_(ignored, self.ignore_index)

    # --- data -------------------------------------------------------------------------------------------------
    def open_data(self, args: argparse.Namespace, device: torch.device) -> SegmentationData:
        """The image + mask pairs the flags describe; sets args.mean/std (and --crop-size) to what was decided."""
        options = SegmentationOptions(crop=self.crop_size, channels=args.channels, train_subset=args.train_subset,
                                      test_subset=args.test_subset, seed=args.seed, ignore_index=self.ignore_index,
                                      mean=None if args.mean is None else tuple(args.mean),
                                      std=None if args.std is None else tuple(args.std), progress=not args.quiet)
        data = open_segmentation(args.dataset, args.data_dir, options)
        args.mean, args.std = list(data.mean), list(data.std)
        args.crop_size = list(data.size)
        self.crop_size = tuple(data.size)
        return data

    def make_loaders(self, data: SegmentationData, args: argparse.Namespace, device: torch.device, drop_last: bool,
                     shard: tuple[int, int] | None) -> Loaders:
        if shard is not None:
            raise InfoProError("segmentation runs in one process for now; run without --parallel")
        train = make_segmentation_loader(data, data.train, device, args.batch_size, True, args.seed,
                                         drop_last=drop_last)

        def evaluation(split: Any) -> Any:
            return make_segmentation_loader(data, split, device, args.batch_size, False, args.seed)

        return Loaders(train, evaluation(data.val) if data.val is not None else None, evaluation(data.test))

    # --- metrics ----------------------------------------------------------------------------------------------
    def train_hits(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | int]:
        # Pixel accuracy at the output's resolution (masks sampled down by nearest): cheap, for the training log.
        small = F.interpolate(targets[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
        labelled = small != self.ignore_index
        return ((logits.argmax(1) == small) & labelled).sum(), labelled.sum()

    def eval_sums(self, num_classes: int, device: torch.device) -> ConfusionSums:
        return ConfusionSums(num_classes, self.ignore_index, device)

    def eval_logits(self, model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        crop = self.crop_size
        larger = crop is not None and (x.shape[-2] > crop[0] or x.shape[-1] > crop[1])
        if self.evaluation == "slide" and larger:
            stride = tuple(max(1, int(c * SLIDE_OVERLAP)) for c in crop)
            return sliding_window_logits(model, x, crop, stride)
        return upsample_logits(model(x), targets.shape[-2:])

    def eval_result(self, shares: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
        return segmentation_result(shares, seconds)

    def summary(self, history: Sequence[dict[str, Any]], best: int) -> dict[str, Any]:
        """`<split>_miou` and `<split>_class_iou` of the last epoch in percent (None: a class absent from the
        split's masks and predictions), and the test mean IoU at the best epoch."""
        out: dict[str, Any] = {}
        last = history[-1]
        for split in ("val", "test"):
            if f"{split}_miou" in last:
                out[f"{split}_miou"] = 100 * last[f"{split}_miou"]
                out[f"{split}_class_iou"] = [None if v is None else 100 * v for v in last[f"{split}_class_iou"]]
                out[f"{split}_pixel_accuracy"] = 100 * last[f"{split}_accuracy"]
        out["test_miou_at_best_epoch"] = 100 * history[best]["test_miou"]
        return out

    def epoch_text(self, record: dict[str, Any], split: str) -> str:
        return f"{split} mIoU {100 * record[f'{split}_miou']:5.2f}%  "

    def done_text(self, summary: dict[str, Any]) -> str:
        return (f"final test mean IoU {summary['test_miou']:.2f}%, best epoch {summary['best_epoch']} on "
                f"{summary['best_selected_on']}: test mean IoU {summary['test_miou_at_best_epoch']:.2f}%")

    def inference(self, network: nn.Module) -> nn.Module:
        return LogitsAtInputSize(network)


def upsample_logits(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Logits resized bilinearly to `size` (align_corners=False, as mmseg's decode heads at inference)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


class LogitsAtInputSize(nn.Module):
    """A segmentation network whose logits come out at its input's height and width."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_logits(self.network(x), x.shape[-2:])


TASKS.add("segment", Segmentation)
DATASETS  # noqa: B018  (segmentation sets register in infopro.data like every set)

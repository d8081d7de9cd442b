"""The trained network out of a run: `model.pt` (plain backbone, no auxiliary nets, plus what rebuilds it),
`load_model` and `infopro export` (pt, safetensors, torchscript).

A model file is a dict {format, arch, num_classes, classes, input_shape, mean, std, epoch, method, K, state_dict},
loadable with `torch.load(..., weights_only=True)`. `load_model` returns an `ImageClassifier`: it takes images
(uint8 in 0..255, or float in [0, 1]), normalises them as training did, and returns logits.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .errors import InfoProError
from .files import atomic_write, error_reason
from .models import SequentialBackbone, build_backbone

MODEL_FORMAT = "infopro-model-1"
MODEL_NAME = "model.pt"
BEST_MODEL_NAME = "model-best.pt"
EXPORT_FORMATS = {"pt": ".pt", "safetensors": ".safetensors", "torchscript": ".torchscript.pt"}
# What rebuilds the network, besides its weights (safetensors keeps it as JSON in the file's metadata).
MODEL_INFO_KEYS = ("arch", "num_classes", "classes", "input_shape", "mean", "std", "epoch", "method", "K")


class ImageClassifier(nn.Module):
    """A trained backbone with its input normalisation: images in, logits out (the network `infopro train`
    trained, without auxiliary nets). `backbone` takes normalised inputs, as in training."""

    def __init__(self, backbone: SequentialBackbone, mean: Sequence[float], std: Sequence[float],
                 classes: Sequence[str], input_shape: Sequence[int]) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.classes = list(classes)
        self.input_shape = tuple(int(s) for s in input_shape)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images, uint8 0..255 or float in [0, 1] -> (N, classes) logits."""
        x = images.float().div(255) if images.dtype == torch.uint8 else images
        return self.backbone((x - self.mean) / self.std)


def model_payload(backbone: nn.Module, info: dict[str, Any]) -> dict[str, Any]:
    """The content of a model file: `info` (see MODEL_INFO_KEYS) and the backbone's weights, on the CPU."""
    missing = [k for k in MODEL_INFO_KEYS if k not in info]
    if missing:
        raise ValueError(f"model info lacks {missing}")
    state = {k: v.detach().to("cpu", copy=True) for k, v in backbone.state_dict().items()}
    return {"format": MODEL_FORMAT, **{k: info[k] for k in MODEL_INFO_KEYS}, "state_dict": state}


def backbone_of(learner: Any, learner_state: dict[str, torch.Tensor]) -> SequentialBackbone:
    """The plain backbone with the weights of `learner_state` (a `LocalLearner` state dict, e.g. a
    checkpoint's `model`, gathered from every rank): piece k's j-th module is block `ranges[k][j]`,
    the last piece's last one the head."""
    from .local.pieces import piece_ranges

    backbone = learner.export()
    ranges = piece_ranges(learner.cuts, len(backbone.blocks))
    names = {f"pieces.{k}.{j}.": f"blocks.{i}." for k, r in enumerate(ranges) for j, i in enumerate(r)}
    names[f"pieces.{len(ranges) - 1}.{len(ranges[-1])}."] = "head."
    state = {}
    for key, value in learner_state.items():
        if key.startswith("pieces."):
            prefix = ".".join(key.split(".")[:3]) + "."
            state[names[prefix] + key[len(prefix):]] = value
    backbone.load_state_dict(state)
    return backbone


def save_model(payload: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda f: torch.save(payload, f))


def model_file(path: str | Path, best: bool = False) -> Path:
    """The model file `path` names: RUN/model.pt (RUN/model-best.pt with `best`) for a run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / (BEST_MODEL_NAME if best else MODEL_NAME)
        if not path.is_file():
            hint = ("it has no validation split (train with --val-split F to pick a best epoch)" if best
                    else "train it first (a run writes model.pt after its first epoch)")
            raise InfoProError(f"run directory {path.parent} has no {path.name}: {hint}")
    elif not path.is_file():
        raise InfoProError(f"no model at {path}; give a run directory or its model.pt / model-best.pt")
    return path


def read_model_file(path: str | Path, best: bool = False) -> dict[str, Any]:
    """A model file's dict (format checked), from a run directory, a model.pt or an exported .safetensors."""
    path = model_file(path, best)
    try:
        if path.suffix == ".safetensors":
            return _read_safetensors(path)
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except InfoProError:
        raise
    except OSError as error:
        raise InfoProError(f"cannot read {path}: {error_reason(error)}") from None
    except Exception as error:  # truncated, foreign, or a TorchScript archive
        raise InfoProError(f"cannot read {path} as an infopro model file ({type(error).__name__}: "
                           f"{error_reason(error)}); a TorchScript export loads with torch.jit.load") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise InfoProError(f"{path} is not an infopro model file (checkpoint.pt is not one either: give the run "
                           f"directory, its model.pt or model-best.pt)")
    return payload


def load_model(path: str | Path, best: bool = False, device: str | torch.device = "cpu") -> ImageClassifier:
    """The trained network of a run, ready in eval mode: `path` is a run directory (its model.pt, or
    model-best.pt with `best=True`), a model file, or a `.safetensors` export."""
    payload = read_model_file(path, best)
    backbone = build_backbone(payload["arch"], payload["num_classes"], payload["input_shape"][0])
    try:
        backbone.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise InfoProError(f"{path}: weights do not fit {payload['arch']}: {error_reason(error)}") from None
    model = ImageClassifier(backbone, payload["mean"], payload["std"], payload["classes"], payload["input_shape"])
    return model.to(device).eval()


def export_model(source: str | Path, fmt: str, out: str | Path | None = None, best: bool = False) -> Path:
    """Write a run's model as one file for use outside infopro; returns its path."""
    if fmt not in EXPORT_FORMATS:
        raise InfoProError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    path = model_file(source, best)
    payload = read_model_file(path)
    if out is None:
        # "-export" keeps a pt export from landing on the run's own model.pt
        out = path.with_name(path.name.removesuffix(".pt") + ("-export" if fmt == "pt" else "") + EXPORT_FORMATS[fmt])
    out = Path(out)
    if out.resolve() == path.resolve():
        raise InfoProError(f"--out {out} is the model file itself; choose another name")
    if fmt == "pt":
        save_model(payload, out)
    elif fmt == "safetensors":
        safetensors = _safetensors()  # before anything is written: a missing extra is one line
        tensors = {k: v.contiguous() for k, v in load_model(path).state_dict().items()}
        metadata = {"format": MODEL_FORMAT, "info": json.dumps({k: payload[k] for k in MODEL_INFO_KEYS})}
        atomic_write(out, lambda f: f.write(safetensors.save(tensors, metadata=metadata)))
    else:
        with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.export, still runs anywhere
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(load_model(path))
            atomic_write(out, lambda f: torch.jit.save(scripted, f))
    return out


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise InfoProError("the safetensors format needs the safetensors package: pip install 'infopro[safetensors]'"
                           ) from None
    return safetensors.torch


def _read_safetensors(path: Path) -> dict[str, Any]:
    tensors = _safetensors().load(path.read_bytes())
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if metadata.get("format") != MODEL_FORMAT:
        raise InfoProError(f"{path} is not an infopro safetensors export (no infopro metadata)")
    info = json.loads(metadata["info"])
    state = {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
    return {"format": MODEL_FORMAT, **info, "state_dict": state}


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run directory (its model.pt) or a model file")
    parser.add_argument("--format", choices=list(EXPORT_FORMATS), default="pt",
                        help="pt: torch.load(weights_only=True) dict with the weights and how to rebuild the "
                             "network; safetensors: the weights (normalisation included) with that info as "
                             "metadata (optional extra); torchscript: torch.jit.load runs it without infopro "
                             "(default: %(default)s)")
    parser.add_argument("--best", action="store_true", help="the best validation epoch's model (model-best.pt)")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="output file (default: beside the model, e.g. RUN/model.safetensors, RUN/model-export.pt)")


def unfinished_run_note(source: str | Path, best: bool = False) -> str | None:
    """A line for a model taken from a run that has not finished: still training (another process holds the run),
    or stopped before its last epoch; None for a finished run or a model file outside a run directory."""
    from .train.run_dir import RunDir  # run_dir imports this module

    path = model_file(source, best)
    run = RunDir(path.parent)
    if not run.config.is_file() or run.progress() == "finished":
        return None
    epoch = read_model_file(path).get("epoch")
    planned = run.read_config().get("epochs", "?")
    pid = run.writer_pid()
    if pid is not None:
        return (f"note: {run.path} is still training (process {pid}, {epoch} of {planned} epochs done): this is "
                f"the model of epoch {epoch}; export again when the run has finished")
    return (f"note: {run.path} stopped after epoch {epoch} of {planned} (unfinished): this is the model of epoch "
            f"{epoch}; finish the run with: infopro train --resume {run.path}")


def export_main(args: argparse.Namespace) -> int:
    out = export_model(args.run, args.format, args.out, args.best)
    print(f"wrote {out} ({args.format})")
    note = unfinished_run_note(args.run, args.best)
    if note:
        print(note)
    return 0

"""The trained network out of a run: `model.pt` (plain backbone, no auxiliary nets, plus what rebuilds it),
`load_model` and `infopro export` (pt, safetensors, onnx, pt2; torchscript, deprecated).

A model file is a dict {format, arch, num_classes, classes, input_shape, mean, std, epoch, method, K, task, the
task's settings (segment: ignore_index), state_dict}, loadable with `torch.load(..., weights_only=True)`.
`load_model` returns an `ImageModel`: it takes images (uint8 in 0..255, or float in [0, 1]), normalises them as
training did, and returns the task's logits: (N, classes) for a classifier, (N, classes, H, W) at the input's
size for a segmentation run (the task's `inference`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .errors import InfoProError
from .files import atomic_write, error_reason
from .models import SequentialBackbone, build_backbone

MODEL_FORMAT = "infopro-model-1"
MODEL_NAME = "model.pt"
BEST_MODEL_NAME = "model-best.pt"
EXPORT_FORMATS = {"pt": ".pt", "safetensors": ".safetensors", "onnx": ".onnx", "pt2": ".pt2",
                  "torchscript": ".torchscript.pt"}
# Where the graph formats (onnx, pt2) keep MODEL_INFO_KEYS as JSON: the ONNX model's metadata_props key, the
# .pt2 archive's extra file (torch.export.load(f, extra_files={"infopro.json": ""}) reads it back).
GRAPH_INFO_KEY = "infopro"
PT2_INFO_FILE = "infopro.json"
TORCHSCRIPT_NOTE = ("note: TorchScript is deprecated by PyTorch; --format pt2 (torch.export) or onnx is its "
                    "replacement, and torchscript will go when PyTorch drops torch.jit")
_torchscript_noted = False
# What rebuilds the network, besides its weights (safetensors keeps it as JSON in the file's metadata); the
# task's own settings (`Task.settings()`, e.g. segmentation's ignore_index) come with them.
MODEL_INFO_KEYS = ("arch", "num_classes", "classes", "input_shape", "mean", "std", "epoch", "method", "K", "task")
# A model file written before tasks were recorded is a classifier's.
DEFAULT_TASK = "classify"


class ImageModel(nn.Module):
    """A trained network with its input normalisation: images in, the task's logits out (the network `infopro
    train` trained, without auxiliary nets, as its task's `inference` hands it out: (N, classes) for a
    classifier, (N, classes, H, W) at the input's size for a segmentation run). `network` takes normalised
    inputs, as in training; `backbone` is the plain trained backbone inside it. `task` names the task."""

    __jit_unused_properties__ = ["backbone"]

    def __init__(self, network: nn.Module, mean: Sequence[float], std: Sequence[float], classes: Sequence[str],
                 input_shape: Sequence[int], task: str = DEFAULT_TASK) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.classes = list(classes)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.task = str(task)

    @property
    def backbone(self) -> SequentialBackbone:
        """The trained backbone (the outermost `SequentialBackbone` of `network`)."""
        return next(m for m in self.network.modules() if isinstance(m, SequentialBackbone))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images, uint8 0..255 or float in [0, 1] -> the task's logits."""
        x = images.float().div(255) if images.dtype == torch.uint8 else images
        return self.network((x - self.mean) / self.std)


# The name of `ImageModel` before segmentation runs had models of their own (a classifier's is one).
ImageClassifier = ImageModel


def info_keys(task: str) -> tuple[str, ...]:
    """The model info of a `task` run: MODEL_INFO_KEYS and the task's own settings (segment: ignore_index)."""
    from .tasks import build_task

    return (*MODEL_INFO_KEYS, *build_task(task).settings())


def model_info(payload: dict[str, Any]) -> dict[str, Any]:
    """The model info of a model file's dict (`info_keys` of its task), without its weights."""
    return {k: payload[k] for k in info_keys(payload["task"]) if k in payload}


def model_payload(backbone: nn.Module, info: dict[str, Any]) -> dict[str, Any]:
    """The content of a model file: `info` (see `info_keys`) and the backbone's weights, on the CPU."""
    missing = [k for k in MODEL_INFO_KEYS if k not in info]
    missing += [k for k in info_keys(info["task"]) if k not in info] if not missing else []
    if missing:
        raise ValueError(f"model info lacks {missing}")
    state = {k: v.detach().to("cpu", copy=True) for k, v in backbone.state_dict().items()}
    return {"format": MODEL_FORMAT, **model_info(info), "state_dict": state}


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
            payload = _read_safetensors(path)
        else:
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except InfoProError:
        raise
    except OSError as error:
        raise InfoProError(f"cannot read {path}: {error_reason(error)}") from None
    except Exception as error:  # truncated, foreign, or a pt2 / TorchScript archive
        raise InfoProError(f"cannot read {path} as an infopro model file ({type(error).__name__}: "
                           f"{error_reason(error)}); a pt2 export loads with torch.export.load, an onnx one with "
                           f"onnxruntime, a TorchScript one with torch.jit.load") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise InfoProError(f"{path} is not an infopro model file (checkpoint.pt is not one either: give the run "
                           f"directory, its model.pt or model-best.pt)")
    payload.setdefault("task", DEFAULT_TASK)
    return payload


def load_model(path: str | Path, best: bool = False, device: str | torch.device = "cpu") -> ImageModel:
    """The trained network of a run, ready in eval mode: `path` is a run directory (its model.pt, or
    model-best.pt with `best=True`), a model file, or a `.safetensors` export. See `ImageModel`."""
    return model_of(read_model_file(path, best), path).to(device)


def model_of(payload: dict[str, Any], path: str | Path) -> ImageModel:
    """The `ImageModel` of a model file's dict (read from `path`, named in errors), in eval mode."""
    from .tasks import TASKS, build_task

    if payload["task"] not in TASKS:
        raise InfoProError(f"{path} is a model of task {payload['task']!r}, which this infopro does not know "
                           f"({', '.join(TASKS.names())}); update infopro")
    task = build_task(payload["task"], **{k: payload[k] for k in build_task(payload["task"]).settings()
                                          if k in payload})
    backbone = build_backbone(payload["arch"], payload["num_classes"], payload["input_shape"][0])
    try:
        backbone.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise InfoProError(f"{path}: weights do not fit {payload['arch']}: {error_reason(error)}") from None
    return ImageModel(task.inference(backbone), payload["mean"], payload["std"], payload["classes"],
                      payload["input_shape"], task.name).eval()


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
    if out.is_dir():
        raise InfoProError(f"--out {out} is a directory; give the file to write (e.g. {out / ('model' + EXPORT_FORMATS[fmt])})")
    from .train.run_dir import refuse_run_file  # run_dir imports this module

    refuse_run_file(out)
    if fmt == "pt":
        save_model(payload, out)
    elif fmt == "safetensors":
        safetensors = _safetensors()  # before anything is written: a missing extra is one line
        model = model_of(payload, path)
        # The plain backbone's weights under "backbone." beside mean and std, whatever wraps it for the task.
        tensors = {"mean": model.mean, "std": model.std,
                   **{f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}}
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        metadata = {"format": MODEL_FORMAT, "info": _info_json(payload)}
        atomic_write(out, lambda f: f.write(safetensors.save(tensors, metadata=metadata)))
    elif fmt == "onnx":
        _onnx_packages()  # before anything is written: a missing extra is one line
        _onnx_export(model_of(payload, path), _graph_inputs(payload), _info_json(payload), out)
    elif fmt == "pt2":
        _pt2_export(model_of(payload, path), _graph_inputs(payload), _info_json(payload), out)
    else:
        _note_torchscript()
        with warnings.catch_warnings():  # the note above says it once; torch's own warning would repeat it
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                scripted = torch.jit.script(model_of(payload, path))
            except Exception as error:  # code TorchScript cannot compile (e.g. the segmentation networks)
                raise InfoProError(f"TorchScript cannot compile this network ({payload['arch']}: "
                                   f"{type(error).__name__}); export --format pt2 (its replacement) or onnx"
                                   ) from None
            atomic_write(out, lambda f: torch.jit.save(scripted, f))
    return out


def _info_json(payload: dict[str, Any]) -> str:
    return json.dumps(model_info(payload))


def _note_torchscript() -> None:
    """TorchScript's deprecation, said once per process on stderr."""
    global _torchscript_noted
    if not _torchscript_noted:
        _torchscript_noted = True
        print(TORCHSCRIPT_NOTE, file=sys.stderr)


GraphInputs = tuple[tuple[torch.Tensor], dict[str, Any]]


def _graph_inputs(payload: dict[str, Any]) -> GraphInputs:
    """The example input of a graph export (two float images in [0, 1] of the model's input shape) and its free
    dimensions: the batch, so that the exported graph takes any batch size (a batch of 1 would be specialised:
    hence two), and height and width where the task's network takes any image size (segmentation)."""
    from .tasks import TASKS

    free: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
    if TASKS.get(payload["task"]).any_image_size:
        # AUTO: torch.export finds the sizes the network takes (a named Dim fails on guards it cannot prove)
        free.update({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO})
    return (torch.rand(2, *payload["input_shape"]),), {"images": free}


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.export / the ONNX exporter warn about things that do not concern this model (torchvision's ops not
    being there, pytree deprecations): the export either works, or raises."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _exported_program(model: nn.Module, inputs: GraphInputs) -> Any:
    example, dynamic = inputs
    try:
        with _quiet_exporter():
            return torch.export.export(model, example, dynamic_shapes=dynamic)
    except Exception as error:  # an architecture torch.export cannot capture: say which, not a traceback
        raise InfoProError(f"torch.export cannot capture this network ({type(error).__name__}: "
                           f"{error_reason(error).splitlines()[0]}); export --format pt or safetensors") from None


def _pt2_export(model: nn.Module, inputs: GraphInputs, info: str, out: Path) -> None:
    """A torch.export archive: `torch.export.load(out).module()` runs the network (float images in [0, 1],
    normalisation inside) without infopro; the model info as the extra file PT2_INFO_FILE."""
    program = _exported_program(model, inputs)
    archive = io.BytesIO()  # torch.export.save wants a path or an io buffer, and atomic_write wraps its file
    torch.export.save(program, archive, extra_files={PT2_INFO_FILE: info})
    atomic_write(out, lambda f: f.write(archive.getvalue()))


def _onnx_packages() -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs both, and imports them only when it runs)
        import onnxscript  # noqa: F401
    except ImportError:
        raise InfoProError("--format onnx needs the onnx and onnxscript packages: pip install 'infopro[onnx]'"
                           ) from None


def _onnx_export(model: nn.Module, inputs: GraphInputs, info: str, out: Path) -> None:
    """An ONNX model by torch's dynamo exporter: input "images" (batch, C, H, W) float32 in [0, 1], output
    "logits" (the task's: (batch, classes), or (batch, classes, H, W) of any H and W for segmentation); the model
    info in its metadata_props under GRAPH_INFO_KEY."""
    example, dynamic = inputs
    try:
        with _quiet_exporter(), contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(model, example, dynamo=True, dynamic_shapes=dynamic,
                                        input_names=["images"], output_names=["logits"], verbose=False)
    except Exception as error:
        raise InfoProError(f"the ONNX exporter cannot convert this network ({type(error).__name__}: "
                           f"{error_reason(error).splitlines()[0]}); export --format pt2 or pt") from None
    program.model.metadata_props[GRAPH_INFO_KEY] = info
    data = program.model_proto.SerializeToString()  # one file, weights inside (ONNX's limit: 2 GB)
    atomic_write(out, lambda f: f.write(data))


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
                             "metadata (optional extra); onnx: an ONNX graph by torch's dynamo exporter, input "
                             "'images' (any batch, float32 in [0, 1]), output 'logits' (optional extra "
                             "infopro[onnx]); pt2: a torch.export archive, torch.export.load(FILE).module() runs "
                             "it without infopro (same input); torchscript: deprecated by PyTorch, use pt2 "
                             "(default: %(default)s)")
    parser.add_argument("--best", action="store_true", help="the best validation epoch's model (model-best.pt)")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="output file (default: beside the model, e.g. RUN/model.safetensors, RUN/model.onnx, "
                             "RUN/model-export.pt)")


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

"""`infopro predict RUN IMAGES... --out DIR`: a segmentation run's masks of new images.

For each image, DIR/NAME_mask.png (a palette PNG: the class index of each pixel, shown in the class colours)
and DIR/NAME_overlay.png (the image blended with those colours). Images are predicted at their own size, one
at a time. Class colours: the standard Cityscapes palette when the run's 19 class names are Cityscapes', the
usual CamVid colours when its 11 are CamVid's, else the PASCAL VOC colour map (from its second entry, so that
no class is black).

The model is what `load_model` returns for a run whose model info says "task": "segment" (an `ImageModel`): it
takes (N, C, H, W) images in [0, 1], normalises them itself, and returns (N, K, H, W) logits at the input size;
it carries `classes` and `input_shape`. Images are normalised once, by the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .data.items import convert, mode_channels, to_array
from .data.sets.folder import IMAGE_EXTENSIONS, is_image_file
from .errors import InfoProError
from .files import atomic_write, check_output_dir, error_reason
from .flag_types import Number
from .model_file import load_model, model_file, read_model_file, unfinished_run_note
from .train.run_dir import refuse_run_file

MASK_SUFFIX, OVERLAY_SUFFIX = "_mask.png", "_overlay.png"
PALETTE_CLASSES = 256  # a palette PNG holds one byte per pixel
TOP_CLASSES_SHOWN = 3  # classes named, with their share of the pixels, on each image's line

RGB = tuple[int, int, int]
CITYSCAPES_COLOURS: dict[str, RGB] = {
    "road": (128, 64, 128), "sidewalk": (244, 35, 232), "building": (70, 70, 70), "wall": (102, 102, 156),
    "fence": (190, 153, 153), "pole": (153, 153, 153), "trafficlight": (250, 170, 30),
    "trafficsign": (220, 220, 0), "vegetation": (107, 142, 35), "terrain": (152, 251, 152),
    "sky": (70, 130, 180), "person": (220, 20, 60), "rider": (255, 0, 0), "car": (0, 0, 142),
    "truck": (0, 0, 70), "bus": (0, 60, 100), "train": (0, 80, 100), "motorcycle": (0, 0, 230),
    "bicycle": (119, 11, 32)}
# CamVid's own label colours (label_colors.txt) for the 11 classes SegNet's benchmark keeps.
CAMVID_COLOURS: dict[str, RGB] = {
    "sky": (128, 128, 128), "building": (128, 0, 0), "pole": (192, 192, 128), "road": (128, 64, 128),
    "sidewalk": (0, 0, 192), "tree": (128, 128, 0), "signsymbol": (192, 128, 128), "fence": (64, 64, 128),
    "car": (64, 0, 128), "pedestrian": (64, 64, 0), "bicyclist": (0, 128, 192)}
# Other names the same CamVid classes go by (SegNet's, CamVid's 32-class list).
CAMVID_ALIASES = {"pavement": "sidewalk", "columnpole": "pole", "sign": "signsymbol"}


def _name_key(name: str) -> str:
    """"Traffic_Light", "traffic light" and "traffic-light" alike: lower case letters and digits only."""
    return "".join(c for c in str(name).lower() if c.isalnum())


def voc_colour(index: int) -> RGB:
    """Entry `index` of the PASCAL VOC colour map (the bits of the index spread over R, G and B)."""
    rgb = [0, 0, 0]
    for bit in range(8):
        for channel in range(3):
            rgb[channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
    return rgb[0], rgb[1], rgb[2]


def class_palette(classes: Sequence[str]) -> list[RGB]:
    """One colour per class, in class order: Cityscapes' or CamVid's own when the class names are all of
    theirs (any order, any case or spacing), else the PASCAL VOC colour map from its second entry."""
    keys = [_name_key(c) for c in classes]
    for known, aliases in ((CITYSCAPES_COLOURS, {}), (CAMVID_COLOURS, CAMVID_ALIASES)):
        named = [aliases.get(k, k) for k in keys]
        if len(named) == len(known) and set(named) == set(known):
            return [known[k] for k in named]
    return [voc_colour(i + 1) for i in range(len(classes))]


def _image_name(image: Image.Image, i: int) -> str:
    return getattr(image, "filename", "") or f"image {i}"


def model_view(image: Image.Image, channels: int, name: str = "the image") -> Image.Image:
    """The image as the model takes it: 'RGB' for a 3-channel model (greyscale replicated, alpha dropped, as
    training converts), 'L' for a 1-channel one, which a colour image is refused for."""
    if channels not in (1, 3):
        raise InfoProError(f"the model takes {channels}-channel images; predict reads greyscale (1) or colour (3) "
                           f"images only")
    if channels == 1 and mode_channels(image.mode) != 1:
        raise InfoProError(f"{name} is a colour image ({image.mode}); this model takes 1-channel (greyscale) "
                           f"images: convert it to greyscale first")
    return convert(image, channels)


@torch.inference_mode()
def predict_masks(model: nn.Module, images: Sequence[Image.Image], device: str | torch.device = "cpu"
                  ) -> list[np.ndarray]:
    """The class index of every pixel of each image, as (H, W) int64 arrays at the image's own size. `model`
    (in eval mode, on `device`; an `ImageModel`) takes float images in [0, 1] of `model.input_shape[0]` channels,
    normalises them itself, and returns (N, K, H, W) logits. An image the model cannot take (a colour image for a
    greyscale model) raises InfoProError naming it."""
    channels = int(model.input_shape[0])
    masks = []
    for i, image in enumerate(images):  # one at a time: images of a folder differ in size
        view = model_view(image, channels, _image_name(image, i))
        x = torch.from_numpy(to_array(view)).to(device).permute(2, 0, 1)[None].float().div(255)
        logits = model(x)
        if logits.dim() != 4 or logits.shape[0] != 1 or logits.shape[2:] != x.shape[2:]:
            raise RuntimeError(f"a segmentation model returns (N, K, H, W) logits at its input's size: got "
                               f"{tuple(logits.shape)} for input {tuple(x.shape)}")
        masks.append(logits[0].argmax(0).cpu().numpy().astype(np.int64))
    return masks


def mask_png(mask: np.ndarray, palette: Sequence[RGB]) -> Image.Image:
    """A palette ('P') image: the pixel values are the class indices, the palette their colours."""
    image = Image.fromarray(mask.astype(np.uint8))  # 2-D uint8: an 'L' image
    flat = [v for colour in palette for v in colour]
    image.putpalette(flat + [0] * (3 * PALETTE_CLASSES - len(flat)))  # an 'L' image becomes 'P'
    return image


def overlay_png(image: Image.Image, mask: np.ndarray, palette: Sequence[RGB], alpha: float) -> Image.Image:
    """The image in colour, blended with the class colours: (1 - alpha) * image + alpha * colours."""
    colours = np.asarray(palette, dtype=np.uint8)[mask]
    return Image.blend(convert(image, 3), Image.fromarray(colours), alpha)


def output_paths(image: Path, out: Path) -> tuple[Path, Path]:
    """(DIR/NAME_mask.png, DIR/NAME_overlay.png) of an image."""
    return out / (image.stem + MASK_SUFFIX), out / (image.stem + OVERLAY_SUFFIX)


def image_paths(sources: Sequence[str | Path], out: Path) -> tuple[list[Path], list[str]]:
    """(the images to predict, problems: one line per source that names no image). A folder gives its image
    files (by extension, sorted; not its subfolders), less this command's outputs when it is `out` itself; a
    file is taken whatever its name. Raises InfoProError when two images would write the same output, or an
    output would replace an input image."""
    paths: dict[Path, Path] = {}  # resolved -> as given, each image once
    problems = []
    for source in map(Path, sources):
        if source.is_dir():
            is_out = source.resolve() == out.resolve()
            found = [p for p in sorted(source.iterdir()) if p.is_file() and is_image_file(p.name)
                     and not (is_out and p.name.endswith((MASK_SUFFIX, OVERLAY_SUFFIX)))]
            if not found:
                problems.append(f"{source}: no image files in this folder ({', '.join(IMAGE_EXTENSIONS)})")
            for p in found:
                paths.setdefault(p.resolve(), p)
        elif source.exists():
            paths.setdefault(source.resolve(), source)
        else:
            problems.append(f"{source}: no such file or folder")
    by_output: dict[str, Path] = {}
    for path in paths.values():
        mask, _ = output_paths(path, out)
        if mask.name in by_output:
            raise InfoProError(f"{by_output[mask.name]} and {path} would both write {mask.name}: predict them "
                               f"into separate --out folders")
        by_output[mask.name] = path
        for written in output_paths(path, out):
            refuse_run_file(written)
            if written.resolve() in paths:
                raise InfoProError(f"writing {written} would replace the input image {paths[written.resolve()]}; "
                                   f"choose another --out")
    return list(paths.values()), problems


def read_image(path: Path) -> Image.Image:
    """The decoded image (read now, so that a truncated file fails here); InfoProError naming it otherwise."""
    image = None
    try:
        image = Image.open(path)
        image.load()  # also closes the file of a single-frame image; closing the image would free its pixels
        return image
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        # PIL says "cannot identify image file" for a non-image, OSError for a truncated one, others for odd ones
        if image is not None:
            image.close()
        raise InfoProError(f"cannot read {path} as an image: {error_reason(error)}") from None


def load_segmentation_model(run: str | Path, best: bool = False, device: str | torch.device = "cpu") -> nn.Module:
    """`load_model` of a segmentation run (its model info says "task": "segment"); InfoProError for a classifier."""
    payload = read_model_file(run, best)
    if payload["task"] != "segment":
        raise InfoProError(f"{model_file(run, best)} is an image classifier ({payload.get('arch')}): predict writes "
                           f"masks of a segmentation run; for a classifier use infopro export / load_model")
    return load_model(run, best, device)


def _top_classes(mask: np.ndarray, classes: Sequence[str]) -> str:
    counts = np.bincount(mask.ravel(), minlength=len(classes))
    top = np.argsort(-counts, kind="stable")[:TOP_CLASSES_SHOWN]
    return ", ".join(f"{classes[c]} {100 * counts[c] / mask.size:.0f}%" for c in top if counts[c])


def predict_files(model: nn.Module, paths: Sequence[Path], out: Path, alpha: float = 0.5,
                  device: str | torch.device = "cpu") -> tuple[int, int]:
    """Write each image's NAME_mask.png and NAME_overlay.png into `out` (atomically; made if needed), a line per
    image on stdout; an image that cannot be read or predicted is named on stderr and skipped. Returns
    (images written, images failed)."""
    classes = [str(c) for c in model.classes]
    if len(classes) > PALETTE_CLASSES:
        raise InfoProError(f"the model has {len(classes)} classes; a palette PNG holds at most {PALETTE_CLASSES}")
    palette = class_palette(classes)
    out.mkdir(parents=True, exist_ok=True)
    written = failed = 0
    for path in paths:
        try:
            image = read_image(path)
            mask = predict_masks(model, [image], device)[0]
        except InfoProError as error:
            print(f"infopro predict: error: {error}", file=sys.stderr)
            failed += 1
            continue
        if int(mask.max(initial=0)) >= len(classes):
            raise RuntimeError(f"the model predicted class {int(mask.max())} of {len(classes)} classes")
        mask_path, overlay_path = output_paths(path, out)
        colour_mask, overlay = mask_png(mask, palette), overlay_png(image, mask, palette, alpha)
        atomic_write(mask_path, lambda f: colour_mask.save(f, format="PNG"))
        atomic_write(overlay_path, lambda f: overlay.save(f, format="PNG"))
        written += 1
        print(f"{path}  {image.width}x{image.height}  -> {mask_path.name}, {overlay_path.name}  "
              f"({_top_classes(mask, classes)})", flush=True)
    return written, failed


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a segmentation run's directory (its model.pt) or a model file")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files, or folders of them (their image files by extension, not subfolders)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory for NAME_mask.png (class index per pixel, a palette PNG) and "
                             "NAME_overlay.png (the image blended with the class colours)")
    parser.add_argument("--alpha", type=Number(float, 0.0, 1.0, what="a weight", name="weight"), default=0.5,
                        help="weight of the class colours in NAME_overlay.png: 0 the image only, 1 the colours only")
    parser.add_argument("--best", action="store_true", help="the best validation epoch's model (model-best.pt)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")


def predict_main(args: argparse.Namespace) -> int:
    from .device import pick_device

    if not 0.0 <= args.alpha <= 1.0:
        raise InfoProError(f"--alpha {args.alpha} is not a weight; give one in [0, 1]")
    out = check_output_dir(args.out)
    device = pick_device(args.device)
    model = load_segmentation_model(args.run, args.best, device)
    paths, problems = image_paths(args.images, out)
    for problem in problems:
        print(f"infopro predict: error: {problem}", file=sys.stderr)
    written, failed = predict_files(model, paths, out, args.alpha, device)
    failed += len(problems)
    print(f"wrote {written} mask(s) and overlay(s) to {out}"
          + (f"; {failed} image(s) or folder(s) failed, named above" if failed else ""))
    note = unfinished_run_note(args.run, args.best)
    if note:
        print(note)
    return 1 if failed else 0

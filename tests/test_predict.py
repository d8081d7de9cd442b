"""`infopro predict`: a segmentation model's masks of image files, with a hand-made model (a 1x1 convolution whose
class is the largest normalised channel; it normalises its input itself, as `load_model`'s does) in place of a
trained run's, and tiny PNGs. A real segmentation run's model: tests/test_segment_outputs.py."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import infopro.errors
import infopro.predict
from infopro.cli import main
from infopro.model_file import MODEL_FORMAT
from infopro.predict import (CAMVID_COLOURS, CITYSCAPES_COLOURS, class_palette, image_paths, predict_masks,
                             voc_colour)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


class ChannelArgmax(nn.Module):
    """Logits = the normalised channels themselves (a 1x1 convolution with identity weights), at input size;
    images in [0, 1] in, normalised here (as `ImageModel`)."""

    def __init__(self, classes=("road", "car", "sky"), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)):
        super().__init__()
        channels = len(mean)
        self.conv = nn.Conv2d(channels, len(classes), 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(len(classes), channels)[:, :, None, None])
        self.classes, self.input_shape = list(classes), (channels, 8, 8)
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def forward(self, x):
        return self.conv((x - self.mean) / self.std)


def png(path, pixels, mode="RGB"):
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode).save(path)
    return path


@pytest.fixture
def segmenter(monkeypatch):
    """`infopro predict` loads ChannelArgmax whatever RUN is."""
    model = ChannelArgmax().eval()
    monkeypatch.setattr(infopro.predict, "load_segmentation_model", lambda run, best, device: model)
    monkeypatch.setattr(infopro.predict, "unfinished_run_note", lambda run, best: None)
    return model


def test_masks_are_the_argmax_of_the_normalised_image_at_its_size():
    image = Image.fromarray(np.array([[RED, GREEN, BLUE], [(200, 100, 0), (0, 0, 0), (10, 10, 200)]], np.uint8))
    [mask] = predict_masks(ChannelArgmax().eval(), [image], "cpu")
    assert mask.shape == (2, 3) and mask.dtype == np.int64
    assert mask.tolist() == [[0, 1, 2], [0, 0, 2]]
    # normalised by the model, once: (200, 100, 0) / 255 - (0.9, 0, 0) = (-0.12, 0.39, 0) -> class 1, black
    # (-0.9, 0, 0) -> the first of the tied, 1
    [mask] = predict_masks(ChannelArgmax(mean=(0.9, 0.0, 0.0)).eval(), [image], "cpu")
    assert mask.tolist() == [[0, 1, 2], [1, 1, 2]]


def test_a_colour_image_is_refused_by_a_greyscale_model_and_greyscale_is_taken_by_a_colour_one():
    colour = Image.fromarray(np.zeros((2, 2, 3), np.uint8))
    grey = Image.fromarray(np.full((2, 2), 200, np.uint8))
    one_channel = ChannelArgmax(classes=("a",), mean=(0.0,), std=(1.0,)).eval()
    with pytest.raises(infopro.errors.InfoProError, match=r"image 0 is a colour image \(RGB\); this model takes "
                                                          r"1-channel \(greyscale\) images"):
        predict_masks(one_channel, [colour])
    assert predict_masks(one_channel, [grey])[0].tolist() == [[0, 0], [0, 0]]
    assert predict_masks(ChannelArgmax().eval(), [grey])[0].shape == (2, 2)
    with pytest.raises(infopro.errors.InfoProError, match="the model takes 4-channel images"):
        predict_masks(ChannelArgmax(mean=(0.0,) * 4, std=(1.0,) * 4), [colour])


def test_palettes_by_class_names():
    cityscapes = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "Traffic Sign",
                  "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                  "bicycle"]
    palette = class_palette(cityscapes)
    assert palette[0] == (128, 64, 128) and palette[6] == (250, 170, 30) and palette[18] == (119, 11, 32)
    assert palette == list(CITYSCAPES_COLOURS.values())
    segnet = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
              "Bicyclist"]
    palette = class_palette(segnet)
    assert palette[0] == (128, 128, 128) and palette[4] == (0, 0, 192) and palette[10] == (0, 128, 192)
    assert sorted(palette) == sorted(CAMVID_COLOURS.values())
    other = class_palette(["background", "cat", "dog", "road"])  # not all Cityscapes' names: the VOC map
    assert other == [(128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128)]
    assert len(set(voc_colour(i) for i in range(256))) == 256


def read(path):
    with Image.open(path) as image:
        image.load()
        return image


def test_writes_a_palette_mask_and_an_overlay_per_image(tmp_path, segmenter, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    png(folder / "a.png", [[RED, GREEN], [BLUE, RED]])
    png(folder / "b.png", [[GREEN, GREEN, GREEN]])
    (folder / "notes.txt").write_text("not an image")
    single = png(tmp_path / "c.png", [[BLUE]])
    out = tmp_path / "out"
    assert main(["predict", "RUN", str(folder), str(single), "--out", str(out), "--device", "cpu",
                 "--alpha", "0.25"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_mask.png", "a_overlay.png", "b_mask.png", "b_overlay.png",
                                                     "c_mask.png", "c_overlay.png"]
    mask = read(out / "a_mask.png")
    assert mask.mode == "P" and np.asarray(mask).tolist() == [[0, 1], [2, 0]]
    assert mask.getpalette()[:9] == [*voc_colour(1), *voc_colour(2), *voc_colour(3)]
    overlay = read(out / "a_overlay.png")
    assert overlay.mode == "RGB" and overlay.size == (2, 2)
    # (1 - 0.25) * red + 0.25 * class 0's colour (128, 0, 0)
    assert np.asarray(overlay)[0, 0].tolist() == pytest.approx([0.75 * 255 + 0.25 * 128, 0, 0], abs=1)
    assert np.asarray(read(out / "b_mask.png")).tolist() == [[1, 1, 1]]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{folder / 'a.png'}  2x2  -> a_mask.png, a_overlay.png  (road 50%, car 25%, sky 25%)")
    assert lines[1].endswith("(car 100%)") and lines[2].startswith(str(single))
    assert lines[3] == f"wrote 3 mask(s) and overlay(s) to {out}"
    assert not list(out.glob(".*"))  # no temporary file left


def test_an_unreadable_image_is_named_the_others_are_written_and_the_exit_is_not_zero(tmp_path, segmenter, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    png(folder / "good.png", [[RED]])
    out = tmp_path / "out"
    assert main(["predict", "RUN", str(folder), str(tmp_path / "missing.jpg"), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"cannot read {folder / 'broken.png'} as an image" in captured.err
    assert f"{tmp_path / 'missing.jpg'}: no such file or folder" in captured.err
    assert (out / "good_mask.png").is_file() and not (out / "broken_mask.png").exists()
    assert captured.out.splitlines()[-1] == (f"wrote 1 mask(s) and overlay(s) to {out}; 2 image(s) or folder(s) "
                                             f"failed, named above")


def test_a_colour_image_for_a_greyscale_model_is_named_and_skipped(tmp_path, monkeypatch, capsys):
    grey_model = ChannelArgmax(classes=("a", "b"), mean=(0.0,), std=(1.0,)).eval()
    monkeypatch.setattr(infopro.predict, "load_segmentation_model", lambda run, best, device: grey_model)
    monkeypatch.setattr(infopro.predict, "unfinished_run_note", lambda run, best: None)
    png(tmp_path / "grey.png", [[0, 255]], mode="L")
    png(tmp_path / "colour.png", [[RED, GREEN]])
    out = tmp_path / "out"
    assert main(["predict", "RUN", str(tmp_path / "colour.png"), str(tmp_path / "grey.png"), "--out", str(out)]) == 1
    assert "colour.png is a colour image (RGB); this model takes 1-channel" in capsys.readouterr().err
    assert np.asarray(read(out / "grey_mask.png")).tolist() == [[0, 0]]
    assert not (out / "colour_mask.png").exists()


def test_out_that_is_a_file_is_refused(tmp_path, segmenter, capsys):
    image = png(tmp_path / "a.png", [[RED]])
    (tmp_path / "taken").write_text("x")
    assert main(["predict", "RUN", str(image), "--out", str(tmp_path / "taken")]) == 2
    assert f"--out {tmp_path / 'taken'} is a file, not a directory" in capsys.readouterr().err


def test_inputs_are_never_overwritten_and_earlier_outputs_are_not_inputs(tmp_path, segmenter, capsys):
    image = png(tmp_path / "a.png", [[RED]])
    earlier = png(tmp_path / "a_mask.png", [[GREEN]])  # a user's image that happens to bear an output's name
    assert main(["predict", "RUN", str(image), str(earlier), "--out", str(tmp_path)]) == 2
    assert f"writing {tmp_path / 'a_mask.png'} would replace the input image" in capsys.readouterr().err
    assert np.asarray(read(earlier)).tolist() == [[list(GREEN)]]
    # predicting a folder into itself twice: the second time, its masks and overlays are not predicted
    earlier.unlink()
    assert main(["predict", "RUN", str(tmp_path), "--out", str(tmp_path)]) == 0
    assert main(["predict", "RUN", str(tmp_path), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_mask.png", "a_overlay.png"]
    assert np.asarray(read(image)).tolist() == [[list(RED)]]


def test_two_images_that_would_write_the_same_mask_are_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    first, second = png(tmp_path / "x" / "a.png", [[RED]]), png(tmp_path / "y" / "a.jpg", [[RED]])
    with pytest.raises(infopro.errors.InfoProError, match="would both write a_mask.png"):
        image_paths([first, second], tmp_path / "out")
    assert image_paths([first, first, tmp_path / "x"], tmp_path / "out") == ([first], [])  # each image once


def test_a_classification_run_is_refused(tmp_path, capsys):
    model = tmp_path / "model.pt"
    torch.save({"format": MODEL_FORMAT, "arch": "resnet32", "state_dict": {}}, model)
    image = png(tmp_path / "a.png", [[RED]])
    assert main(["predict", str(model), str(image), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "is an image classifier (resnet32): predict writes masks of a segmentation run; for a classifier use " \
           "infopro export / load_model" in err
    assert not (tmp_path / "out").exists()


def test_alpha_outside_zero_to_one_is_refused(tmp_path, segmenter, capsys):
    image = png(tmp_path / "a.png", [[RED]])
    assert main(["predict", "RUN", str(image), "--out", str(tmp_path / "out"), "--alpha", "1.5"]) == 2
    assert "--alpha must be a weight in [0, 1], got 1.5" in capsys.readouterr().err


def test_a_segmentation_run_is_loaded_with_load_model(tmp_path, monkeypatch):
    model = tmp_path / "model.pt"
    torch.save({"format": MODEL_FORMAT, "task": "segment", "arch": "deeplabv3", "state_dict": {}}, model)
    loaded = []
    monkeypatch.setattr(infopro.predict, "load_model", lambda *a: loaded.append(a) or "the model")
    assert infopro.predict.load_segmentation_model(model, False, "cpu") == "the model"
    assert loaded == [(model, False, "cpu")]

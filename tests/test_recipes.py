"""docs/recipes.md against configs/: every paper config holds the values its recipe table traces to the authors'
code, every config is covered by a table, and the values fixed in code (augmentation, normalisation, cuts,
defaults) are what the page says."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "recipes.md"
CONFIGS = ROOT / "configs"


def tables() -> tuple[dict[str, dict[str, object]], dict[str, list[float]]]:
    """({file-name regex: {key: our value}}, {config: lambdas}) as the page's tables give them."""
    recipes: dict[str, dict[str, object]] = {}
    lambdas: dict[str, list[float]] = {}
    current: dict[str, object] | None = None
    in_lambdas = False
    for line in PAGE.read_text().splitlines():
        marker = re.fullmatch(r"<!-- recipe: (.+) -->", line.strip())
        if marker:
            current, in_lambdas = recipes.setdefault(marker.group(1), {}), False
            continue
        if line.strip() == "<!-- lambdas -->":
            current, in_lambdas = None, True
            continue
        if line.startswith("#"):  # a heading ends any table
            current, in_lambdas = None, False
            continue
        if not line.startswith("|"):
            if line.strip() == "" and current is not None and current:
                current = None  # a table ends at its first blank line
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("key", "config") or set(cells[0]) <= {"-"}:
            continue
        if current is not None:
            current[cells[0]] = yaml.safe_load(cells[1])
        elif in_lambdas:
            lambdas[cells[0]] = yaml.safe_load(cells[1])
    return recipes, lambdas


RECIPES, LAMBDAS = tables()
CONFIG_FILES = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.glob("*/*.yaml"))


def recipe_of(name: str) -> dict[str, object]:
    matching = [values for pattern, values in RECIPES.items() if re.fullmatch(pattern, name)]
    assert len(matching) == 1, f"{name}: matched by {len(matching)} recipe tables of {PAGE.name}, not 1"
    return matching[0]


def test_the_page_has_its_tables():
    assert len(RECIPES) >= 5 and all(len(values) >= 10 for values in RECIPES.values())
    assert len(LAMBDAS) >= 30


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_matches_its_recipe_table(name):
    config = yaml.safe_load((CONFIGS / name).read_text())
    for key, value in recipe_of(name).items():
        assert key in config, f"{name} lacks {key} (docs/recipes.md: {value!r})"
        assert config[key] == value, f"{name}: {key} = {config[key]!r}, docs/recipes.md traces {value!r}"
    if config["method"].startswith("infopro"):
        assert name in LAMBDAS, f"{name}: its lambdas have no row (and no source) in docs/recipes.md"
    if name in LAMBDAS:
        assert [float(v) for v in config["lambdas"]] == [float(v) for v in LAMBDAS[name]], name


def test_every_lambda_row_names_a_config():
    assert set(LAMBDAS) <= set(CONFIG_FILES)


def test_a_drifted_config_is_caught(tmp_path):
    """The check above can fail: a copy of a config with the warm-up dropped does not match its table."""
    name = "cifar10/resnet32-e2e.yaml"
    config = yaml.safe_load((CONFIGS / name).read_text())
    config["warmup_epochs"] = 0
    drifted = [k for k, v in recipe_of(name).items() if config.get(k) != v]
    assert drifted == ["warmup_epochs"]


def test_configs_are_what_make_configs_writes(tmp_path, monkeypatch):
    """configs/ is scripts/make_configs.py's output: edit the script, not the files."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_configs", ROOT / "scripts" / "make_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "CONFIGS", tmp_path)
    monkeypatch.setattr(module, "ROOT", tmp_path / "cifar10")
    module.main()
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*.yaml"))
    assert written == CONFIG_FILES
    for name in written:
        assert (tmp_path / name).read_text() == (CONFIGS / name).read_text(), name


def test_values_fixed_in_code_are_the_pages():
    from infopro.data import DATASETS
    from infopro.local.cuts import PAPER_BALANCED_CUTS, PAPER_BALANCED_STL10_CUTS, PAPER_CUTS
    from infopro.train.args import add_train_arguments
    import argparse

    cifar = DATASETS.get("cifar10")
    assert (cifar.pad, cifar.padding, cifar.flip) == (4, "reflect", True)
    assert cifar.mean == pytest.approx(tuple(x / 255 for x in (125.3, 123.0, 113.9)))
    assert cifar.std == pytest.approx(tuple(x / 255 for x in (63.0, 62.1, 66.7)))
    svhn, stl = DATASETS.get("svhn"), DATASETS.get("stl10")
    assert (svhn.pad, svhn.padding, svhn.flip) == (2, "zeros", False)
    assert (stl.pad, stl.padding, stl.flip) == (4, "zeros", True)
    assert PAPER_CUTS["resnet32"][4] == [(1, 2), (2, 1), (3, 0)]
    assert PAPER_CUTS["resnet110"][2] == [(2, 8)]
    assert PAPER_BALANCED_CUTS["resnet110"][3] == [(1, 9), (2, 2)]
    assert PAPER_BALANCED_STL10_CUTS["resnet110"][3] == [(1, 8), (2, 1)]
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    defaults = parser.parse_args([])
    assert (defaults.temperature, defaults.aux_feature_dim, defaults.aux_head) == (0.07, 128, None)
    from infopro.local.methods import METHODS

    assert METHODS.get("infopro-contrast").head == METHODS.get("dgl").head == "1c2f"  # None: the method's head

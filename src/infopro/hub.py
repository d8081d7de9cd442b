"""`infopro push RUN REPO` / `infopro pull REPO DIR`: a run's trained network on the Hugging Face Hub, with a
model card (README.md) that holds the run's recipe (config.yaml) and results (summary.json).

A pushed repository holds model.pt (what `infopro.load_model` reads, so a pulled folder loads like a run
directory), the exports asked for (model.safetensors, model.onnx, model.pt2), config.yaml, summary.json,
metrics.csv, curves.png and README.md. What only holds on this machine stays here: the host name, the
command line, and absolute paths (reduced to their last part). `huggingface_hub` is an optional extra
(`infopro[hub]`), imported when a command runs; its own login (`hf auth login`, or HF_TOKEN) is used.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .errors import InfoProError
from .files import atomic_write_text, error_reason
from .model_file import MODEL_NAME, export_model, load_model, model_file
from .train.run_dir import RunDir

HUB_FORMATS = ("safetensors", "onnx", "pt2")  # beside model.pt, which is always pushed
RUN_FILES_PUSHED = ("metrics.csv", "curves.png", "class_iou.png")
# The Hub's pipeline tag of a run's task (config.yaml's `task`; a run without one is a classifier's).
PIPELINE_TAGS = {"classify": "image-classification", "segment": "image-segmentation"}
PRIVATE_PROVENANCE = ("host", "command")  # this machine's name, and a command line full of local paths


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise InfoProError("push and pull need the huggingface_hub package: pip install 'infopro[hub]'") from None
    return huggingface_hub


def _public(value: Any) -> Any:
    """`value` without this machine's absolute paths (each reduced to its last part)."""
    if isinstance(value, str) and value.startswith("/"):
        return Path(value).name
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def public_summary(summary: dict[str, Any]) -> dict[str, Any]:
    summary = _public(summary)
    if isinstance(summary.get("provenance"), dict):
        summary["provenance"] = {k: v for k, v in summary["provenance"].items() if k not in PRIVATE_PROVENANCE}
    return summary


def _percent(value: Any) -> str:
    """A fraction as a percentage with two decimals ("–" when there is none)."""
    return _number(100 * value if isinstance(value, (int, float)) else None)


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "–"


def model_card(repo: str, config: dict[str, Any], summary: dict[str, Any] | None, epochs_done: int,
               files: list[str]) -> str:
    """README.md of a pushed run: what it is, its results, its recipe, how to use it."""
    arch, method, k, dataset = (config.get(key, "?") for key in ("arch", "method", "K", "dataset"))
    front = {"library_name": "infopro", "pipeline_tag": PIPELINE_TAGS.get(config.get("task") or "classify", "other"),
             "tags": ["infopro", "locally-supervised-learning", str(method), str(arch)]}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {arch} trained with {method} (K={k}) on {dataset}", "",
             f"A network trained by infopro's `infopro train` as {k} locally supervised pieces ({method}). The files hold the plain network (no auxiliary nets): images in, logits out.", "",
             "## Results", ""]
    if summary is None:
        lines += [f"Not finished: {epochs_done} of {config.get('epochs', '?')} epochs done when it was pushed "
                  f"(no summary.json yet); the model is that of epoch {epochs_done}.", ""]
    else:
        memory = summary.get("peak_memory_bytes")
        memory_text = f"{memory / 2**20:.0f} ({summary.get('memory_kind', '')})" if isinstance(memory, (int, float)) else "–"
        # A segmentation run's summary has its mean IoU (in %): the number its field reports, not the error.
        name, final, at_best = (("test mean IoU", _number(summary.get("test_miou")),
                                 _number(summary.get("test_miou_at_best_epoch"))) if "test_miou" in summary else
                                ("test error", _percent(summary.get("final_test_error")),
                                 _percent(summary.get("test_error_at_best_epoch"))))
        lines += [f"| {name} (%) | best epoch (chosen on) | {name} at the best epoch (%) | epochs | "
                  "peak memory (MiB) | parameters |", "|---|---|---|---|---|---|",
                  f"| {final} | {summary.get('best_epoch', '–')} "
                  f"({summary.get('best_selected_on', '–')}) | {at_best} | "
                  f"{summary.get('epochs', '–')} | {memory_text} | {summary.get('parameters', '–')} |", "",
                  "summary.json, as the run wrote it (less this machine's name and paths):", "", "```json",
                  json.dumps(summary, indent=2), "```", ""]
    lines += ["## Recipe", "", "config.yaml: every setting of the run (`infopro train -c config.yaml --data-dir DATA "
              "--out RUN` trains it again; data paths are reduced to their last part).", "", "```yaml",
              yaml.safe_dump(config, sort_keys=True).strip(), "```", "",
              "## Use", "", "```bash", f"infopro pull {repo} model-dir", "```", "", "```python", "import infopro",
              "", 'model = infopro.load_model("model-dir")  # (N, C, H, W) uint8 0..255 or float in [0, 1] -> logits',
              "print(model.classes)", "```", "",
              "## Files", "", *(f"- `{name}`" for name in files), ""]
    return "\n".join(lines)


def push(run_path: str | Path, repo: str, formats: list[str], best: bool = False, private: bool = False,
         message: str | None = None) -> str:
    """Upload a run's model, the exports in `formats` and its model card to the Hub repository `repo` (made
    when missing); returns the repository's URL."""
    run = RunDir(run_path)
    if not run.path.is_dir() or not run.config.is_file():
        raise InfoProError(f"{run_path} is not a run directory (no config.yaml); push needs the run's directory "
                           f"for its recipe and results")
    source = model_file(run.path, best)  # its own one-line error when there is no model yet
    hub = _hub()  # before anything is exported: a missing extra is one line
    config = _public(run.read_config())
    summary = run.read_summary()
    records = run.metric_records()
    if summary is None:
        print(f"note: {run.path} is not finished ({len(records)} of {config.get('epochs', '?')} epochs): pushing "
              f"the model of epoch {len(records)}, and a card that says so")
    with tempfile.TemporaryDirectory(prefix="infopro-push-") as folder:
        staged = Path(folder)
        export_model(source, "pt", staged / MODEL_NAME)
        for fmt in formats:
            export_model(source, fmt, staged / f"model.{fmt}")
        atomic_write_text(staged / "config.yaml", yaml.safe_dump(config, sort_keys=True))
        if summary is not None:
            summary = public_summary(summary)
            atomic_write_text(staged / "summary.json", json.dumps(summary, indent=2) + "\n")
        for name in RUN_FILES_PUSHED:
            if (run.path / name).is_file():
                (staged / name).write_bytes((run.path / name).read_bytes())
        files = sorted(p.name for p in staged.iterdir()) + ["README.md"]
        atomic_write_text(staged / "README.md", model_card(repo, config, summary, len(records), sorted(files)))
        try:
            api = hub.HfApi()
            url = api.create_repo(repo_id=repo, private=private, exist_ok=True)
            api.upload_folder(folder_path=str(staged), repo_id=repo,
                              commit_message=message or f"infopro push of {run.path.name}")
        except Exception as error:  # the hub's HTTP and auth errors: its message says what went wrong
            raise InfoProError(f"push to {repo} failed ({type(error).__name__}: {error_reason(error)}); log in "
                               f"with `hf auth login` or set HF_TOKEN, and check the repository name") from None
    return str(url)


def pull(repo: str, out: str | Path, revision: str | None = None) -> Path:
    """Download the Hub repository `repo` (a pushed run) into `out`, checked to load with `infopro.load_model`."""
    hub = _hub()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InfoProError(f"{out} is a file; give a folder to pull into")
    try:
        hub.snapshot_download(repo_id=repo, local_dir=str(out), revision=revision)
    except Exception as error:
        raise InfoProError(f"pull of {repo} failed ({type(error).__name__}: {error_reason(error)}); check the "
                           f"repository name, and log in (`hf auth login` or HF_TOKEN) for a private one") from None
    if not (out / MODEL_NAME).is_file():
        raise InfoProError(f"{repo} holds no {MODEL_NAME}: it was not pushed by `infopro push`")
    load_model(out)  # a broken or foreign model.pt is said now, not when it is used
    return out


def add_push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run directory written by `infopro train`")
    parser.add_argument("repo", metavar="REPO", help="Hugging Face Hub model repository, user/name (made when missing)")
    parser.add_argument("--format", nargs="+", choices=HUB_FORMATS, default=[], dest="formats", metavar="FORMAT",
                        help=f"exports to push beside model.pt: {', '.join(HUB_FORMATS)} (as `infopro export`; "
                             f"default: none)")
    parser.add_argument("--best", action="store_true", help="the best validation epoch's model (model-best.pt)")
    parser.add_argument("--private", action="store_true", help="make the repository private when it is created")
    parser.add_argument("--message", default=None, help="commit message (default: infopro push of RUN)")


def add_pull_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo", metavar="REPO", help="Hugging Face Hub model repository pushed by `infopro push`")
    parser.add_argument("out", metavar="DIR", help="folder to download into (then infopro.load_model(DIR))")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default: the main branch)")


def push_main(args: argparse.Namespace) -> int:
    url = push(args.run, args.repo, args.formats, args.best, args.private, args.message)
    print(f"pushed {args.run} to {url}")
    return 0


def pull_main(args: argparse.Namespace) -> int:
    out = pull(args.repo, args.out, args.revision)
    print(f"pulled {args.repo} into {out}: infopro.load_model({str(out)!r})")
    return 0

"""How a run was made: the command, versions, commit, host, times and the settings as resolved (the actual
cuts, lambdas and device, not `auto` or the method's default). Kept in config.yaml as a comment header (the
file stays a plain mapping of flags that `-c` and `--resume` read) and in summary.json as `provenance`."""

from __future__ import annotations

import argparse
import platform
import shlex
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(folder: Path | None = None) -> str | None:
    """The commit of the checkout infopro runs from (with "-dirty" when it has uncommitted changes), or None
    for an installed package or a machine without git."""
    folder = folder or Path(__file__).resolve().parent
    try:
        def git(*command: str) -> str:
            return subprocess.run(["git", "-C", str(folder), *command], capture_output=True, text=True,
                                  timeout=5, check=True).stdout.strip()

        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "") if commit else None


def provenance(args: argparse.Namespace, learner: Any, device: torch.device, started: str) -> dict[str, Any]:
    from .. import __version__

    lambdas = learner.lambdas
    record: dict[str, Any] = {
        "command": shlex.join(getattr(args, "command_line", None) or ["infopro", "train"]),
        "infopro": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "started": started,
        "resolved": {
            "device": str(device),
            "K": learner.K,
            "cuts": list(learner.cuts),
            "lambdas": [lambdas.recon_first, lambdas.task_first, lambdas.recon_last, lambdas.task_last],
            "method_options": dict(learner.method_options),
            "lr": args.lr,
            "mean": list(args.mean), "std": list(args.std), "data_path": args.data_path,
        },
    }
    if device.type == "cuda":
        record["cuda"] = torch.version.cuda
        record["cudnn"] = torch.backends.cudnn.version()
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


def as_comment(record: dict[str, Any]) -> str:
    """The record as `# key: value` lines for the top of config.yaml."""
    lines = ["how this run was made (comments: `-c` and `--resume` read only the settings below)"]
    for key, value in record.items():
        if isinstance(value, dict):
            lines += [f"{key}:"] + [f"  {k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {value}")
    return "".join(f"# {line}\n" for line in lines)

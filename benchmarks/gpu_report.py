"""One Markdown report of what `benchmarks/gpu_session.sh OUT ...` measured, read from OUT only.

    python benchmarks/gpu_report.py OUT          # prints it, writes OUT/gpu_report.md and OUT/gpu_report.json

Every number comes from the files the session wrote (bench.md/json, metrics.jsonl, summary.json); a part
that was cut short by its time limit is reported with the epochs it did finish, and marked.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from infopro.train.run_dir import RunDir

MiB = 2**20


def run_row(run: Path) -> dict[str, Any]:
    run_dir = RunDir(run)
    history = run_dir.metric_records() if run_dir.metrics.is_file() else []  # a torn last line is skipped
    summary = run_dir.read_summary()
    row: dict[str, Any] = {"run": run.name, "finished": summary is not None, "epochs_done": len(history)}
    if history:
        last = history[-1]
        row.update(final_test_error=last["test_error"], best_test_error=min(r["test_error"] for r in history),
                   final_train_accuracy=last["train_accuracy"], first_epoch_loss=history[0]["train_losses"][-1],
                   test_accuracy_by_epoch=[round(r["test_accuracy"], 4) for r in history],
                   seconds_per_epoch=sum(r["epoch_seconds"] for r in history) / len(history),
                   images_per_second=[round(r["images_per_second"]) for r in history],
                   peak_memory_mib=max(r["peak_memory_bytes"] for r in history) / MiB)
    if summary is not None:
        row.update(method=summary["method"], K=summary["K"], cuts=summary["cuts"], planned_epochs=summary["epochs"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    out: Path = args.out
    report: dict[str, Any] = {"machine": (out / "machine.txt").read_text().strip() if (out / "machine.txt").is_file() else ""}
    lines = [f"# GPU session: {out}", "", "```", report["machine"], "```", ""]

    for name, title in (("table3", "Table 3: ResNet-110, batch 1024"),
                        ("table3-balanced", "Table 3 on memory-balanced cuts (InfoPro*)"),
                        ("imagenet_memory", "ImageNet scale, 224 px")):
        if not (out / name).is_dir():
            continue
        tables = sorted((out / name).glob("*.md"))
        lines += [f"## {title}", ""]
        lines += [t.read_text() for t in tables] if tables else ["(not measured: the part did not finish; see its log)"]
        lines.append("")

    runs = sorted(p for p in (out / "runs").glob("*") if p.is_dir()) if (out / "runs").is_dir() else []
    report["runs"] = [run_row(r) for r in runs]
    lines += ["## Training runs", "",
              "| run | epochs done | finished | epoch-1 loss | final train acc | final test error | best test error "
              "| s/epoch | img/s (median) | peak MiB |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        if not r["epochs_done"]:
            lines.append(f"| {r['run']} | 0 | no |" + " – |" * 7)
            continue
        lines.append(f"| {r['run']} | {r['epochs_done']} | {'yes' if r['finished'] else 'no (cut by its time limit)'} | "
                     f"{r['first_epoch_loss']:.3f} | {100 * r['final_train_accuracy']:.2f} % | "
                     f"{100 * r['final_test_error']:.2f} % | {100 * r['best_test_error']:.2f} % | "
                     f"{r['seconds_per_epoch']:.1f} | {statistics.median(r['images_per_second']):.0f} | "
                     f"{r['peak_memory_mib']:.0f} |")
    lines += ["", "Seconds and images/s of runs trained side by side are shared-GPU figures; "
              "gpu_report.json holds each epoch's test accuracy and images/s."]
    text = "\n".join(lines) + "\n"
    (out / "gpu_report.md").write_text(text)
    (out / "gpu_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""Where a training step's CUDA peak goes, against the CPU's live-tensor count: state, pieces, workspace, allocator.

On an H200, ResNet-110 batch 1024, InfoPro Contrast K=4 (balanced cuts) needs 42.0 % of E2E's
`max_memory_allocated`, while on the CPU it needs 29.2 % of E2E's live-tensor peak. This script splits one
step (zero_grad, `train_step`, SGD step, as `infopro bench` measures it) of E2E and of the local learner into:

  state      parameters (pieces, auxiliary nets), gradients, the optimiser's momentum, the batch: exact sizes.
  pieces     per piece (and the optimiser step after them): the peak of activations saved for backward
             (saved-tensor hooks) with the auxiliary nets' share (the learner's profile), the peak of every
             tensor the step created (`LiveTensorMeter`), and on CUDA the allocator's peak.
  the peak   (CUDA) the operator during which `max_memory_allocated` peaks, and what was allocated then: the
             state, what was allocated before the step but is no tensor here (cuBLAS workspaces, ...), the
             tensors the step had created (saved activations, gradients, others), the operator's outputs, scratch
             memory inside the operator that no tensor holds (cuDNN's workspace), and allocations made between
             operators that no tensor holds. Measured by resetting the allocator's peak before each operator.
             The operators with the most scratch memory are listed.
  allocator  (CUDA) reserved against allocated at the peak (cached blocks and fragmentation, from
             `torch.cuda.memory_stats`), and for the default variant (--no-snapshot: not) the largest blocks
             alive at the peak and the Python line that allocated them (`torch.cuda.memory._record_memory_history`).

Variants, each (E2E and the learner) in a child process of its own, since the allocator reads its
configuration when CUDA starts and cuDNN keeps its algorithm choices for the process:
  default              cudnn.benchmark off (torch's default; Table 3 on the GPU ran so);
  cudnn-benchmark      cudnn.benchmark on (what `infopro train` sets on CUDA);
  cudnn-off            cuDNN disabled (PyTorch's own convolutions): the control for cuDNN's workspace;
  piece-step           each piece's SGD step right after its backward, and its gradients freed then (the same
                       update: a piece's gradients are final once its backward ran);
  expandable-segments  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (less fragmentation, same tensors).

Without CUDA it runs what the CPU can (state sizes; per piece the saved and live-tensor peaks) and prints
"CUDA: not available" for the rest.

    python benchmarks/cuda_memory_breakdown.py --arch resnet110 --K 4 --cuts balanced --batch-size 1024
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import torch

import infopro
from infopro.bench import SavedActivationMeter
from infopro.bench.live_memory import LiveTensorMeter
from infopro.device import pick_device
from infopro.errors import InfoProError

MiB = 2**20
INPUT_SHAPE = (3, 32, 32)
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "cudnn-benchmark": {"cudnn_benchmark": True},
    "cudnn-off": {"cudnn": False},
    "piece-step": {"piece_step": True},
    "expandable-segments": {"env": {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}},
}


def tensor_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages of `tensors`."""
    storages = {(t.device.type, t.untyped_storage().data_ptr()): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


class OpPeakMeter(LiveTensorMeter):
    """`LiveTensorMeter` that, on CUDA, also resets the allocator's peak before each operator and reads it
    after: the operator during which the step peaks, what was allocated before it, its outputs, and the
    scratch memory it took that no tensor holds. `window` is the piece the step is in (set by the caller)."""

    def __init__(self, exclude: list[torch.Tensor], device: torch.device,
                 saved: SavedActivationMeter | None = None, params: list[torch.Tensor] = ()) -> None:
        super().__init__(exclude)
        self.cuda = device if device.type == "cuda" else None
        self.saved, self.params = saved, list(params)
        self.window = 0
        self.window_cuda_peak: dict[int, int] = {}
        self.top: dict[str, Any] = {"peak": -1}
        self.scratch_by_op: dict[str, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if self.cuda is None:
            return super().__torch_dispatch__(func, types, args, kwargs)
        before = torch.cuda.memory_allocated(self.cuda)
        torch.cuda.reset_peak_memory_stats(self.cuda)
        live_before = self.current_bytes
        out = super().__torch_dispatch__(func, types, args, kwargs)
        peak = torch.cuda.max_memory_allocated(self.cuda)
        outputs = max(0, self.current_bytes - live_before)
        scratch = max(0, peak - before - outputs)
        name = str(func)
        self.scratch_by_op[name] = max(self.scratch_by_op.get(name, 0), scratch)
        self.window_cuda_peak[self.window] = max(self.window_cuda_peak.get(self.window, 0), peak)
        if peak > self.top["peak"]:
            grads = [p.grad for p in self.params if p.grad is not None]
            self.top = {"peak": peak, "op": name, "window": self.window, "allocated_before": before,
                        "live_before": live_before, "outputs": outputs, "scratch": scratch,
                        "saved": self.saved.current_bytes if self.saved is not None else 0,
                        "grads": tensor_bytes(grads)}
        return out


def peak_blocks(trace: list[dict[str, Any]], base_bytes: int, top: int = 12) -> dict[str, Any]:
    """Replay an allocator trace (`torch.cuda.memory._snapshot()["device_traces"][i]`, recorded from a moment
    when `base_bytes` were allocated): the peak, and the largest blocks alive then with where they were
    allocated, also summed per place."""
    def replay(stop: int | None) -> tuple[int, int, dict[int, dict]]:
        live: dict[int, dict] = {}
        total = peak = base_bytes
        at = -1
        for i, event in enumerate(trace[:stop]):
            if event["action"] == "alloc":
                live[event["addr"]] = event
                total += event["size"]
                if total > peak:
                    peak, at = total, i
            elif event["action"] == "free_completed":
                live.pop(event["addr"], None)
                total -= event["size"]  # a block allocated before the trace began was in base_bytes
        return peak, at, live

    peak, at, _ = replay(None)
    _, _, live = replay(at + 1)
    blocks = sorted(live.values(), key=lambda e: -e["size"])
    sites: dict[str, int] = {}
    for event in blocks:
        sites[where(event.get("frames", []))] = sites.get(where(event.get("frames", [])), 0) + event["size"]
    return {"peak_bytes": peak, "blocks_alive": len(blocks),
            "largest": [{"bytes": e["size"], "where": where(e.get("frames", []))} for e in blocks[:top]],
            "by_site": sorted(({"where": w, "bytes": b} for w, b in sites.items()), key=lambda s: -s["bytes"])[:top]}


def where(frames: list[dict[str, Any]]) -> str:
    """The innermost Python frame, and the innermost one of this project's code if that is another."""
    def name(f: dict[str, Any]) -> str:
        return f"{Path(f.get('filename', '?')).name}:{f.get('line', '?')} {f.get('name', '?')}"

    frames = [f for f in frames if str(f.get("filename", "")).endswith(".py")]
    if not frames:
        return "(no Python frame: allocated outside Python, e.g. in backward)"
    ours = next((f for f in frames if "infopro" in str(f.get("filename", ""))), None)
    return name(frames[0]) + (f" < {name(ours)}" if ours is not None and ours is not frames[0] else "")


def build(spec: dict[str, Any], device: torch.device) -> tuple[infopro.LocalLearner, torch.Tensor, torch.Tensor]:
    """The learner of `spec` on `device` and one random batch."""
    torch.manual_seed(0)
    backbone = infopro.build_backbone(spec["arch"], 10).to(device)
    if spec["channels_last"]:
        backbone = backbone.to(memory_format=torch.channels_last)
    K = spec["K"]
    learner = infopro.LocalLearner(backbone, K, spec["method"] if K > 1 else "e2e",
                                   cuts=spec["cuts"] if K > 1 else "even", input_shape=INPUT_SHAPE,
                                   profile_batch_size=spec["batch_size"])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(spec["batch_size"], *INPUT_SHAPE, generator=gen).to(device)
    if spec["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.arange(spec["batch_size"]) % 10).to(device)
    return learner, x, y


def breakdown(spec: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """One learner, one variant, in this process: everything this device can measure."""
    variant = VARIANTS[spec["variant"]]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = variant.get("cudnn_benchmark", False)
        torch.backends.cudnn.enabled = variant.get("cudnn", True)
    learner, x, y = build(spec, device)
    K = learner.K
    groups = [[*learner.pieces[k].parameters(), *learner.aux[k].parameters()] for k in range(K)]
    opt_args = {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}
    piece_step = variant.get("piece_step", False)
    if piece_step and any(obj.needs_cascade for obj in learner.aux):
        raise InfoProError(f"piece-step: {spec['method']} trains a piece through a later piece's loss")
    optimizers = [torch.optim.SGD(g, **opt_args) for g in groups] if piece_step else \
        [torch.optim.SGD(learner.parameters(), **opt_args)]
    hooks: list[Callable[[int], None]] = []

    def step_piece(k: int) -> None:
        optimizers[k].step()
        optimizers[k].zero_grad(set_to_none=True)

    if piece_step:
        hooks.append(step_piece)
    learner.piece_done = lambda k: [hook(k) for hook in hooks]

    def one_step() -> None:
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        learner.train_step(x, y)
        if not piece_step:
            optimizers[0].step()
        learner.after_optimizer_step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):  # momentum buffers exist, cuDNN has chosen its algorithms
        one_step()
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    sync()
    params = list(learner.parameters())
    opt_state = [t for o in optimizers for s in o.state.values() for t in s.values() if torch.is_tensor(t)]
    existing = [*params, *learner.buffers(), *opt_state, x, y]
    param_bytes = tensor_bytes(params)
    state = {"parameters_pieces": tensor_bytes(list(learner.pieces.parameters())),
             "parameters_aux": tensor_bytes(list(learner.aux.parameters())),
             "buffers": tensor_bytes(list(learner.buffers())), "gradients": param_bytes,
             "optimizer_state": tensor_bytes(opt_state), "batch": tensor_bytes([x, y])}
    result: dict[str, Any] = {**spec, "device": str(device), "cuts": learner.cuts, "state": state,
                              "existing_bytes": tensor_bytes(existing),
                              "piece_saved_profile": [list(p) for p in learner.piece_memory(spec["batch_size"])]}

    if device.type == "cuda":  # the plain step first: no meter, the allocator's own figures
        torch.cuda.empty_cache()
        result["reserved_before_step_after_empty_cache"] = torch.cuda.memory_reserved(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        one_step()
        sync()
        stats = torch.cuda.memory_stats(device)
        result["allocator"] = {
            "allocated_at_start": start, "peak_allocated": stats["allocated_bytes.all.peak"],
            "peak_reserved": stats["reserved_bytes.all.peak"], "peak_active": stats.get("active_bytes.all.peak"),
            "peak_inactive_split": stats.get("inactive_split_bytes.all.peak"),
            "alloc_retries": stats.get("num_alloc_retries"), "peak_segments": stats.get("segment.all.peak"),
            "cuda_mallocs": stats.get("num_device_alloc"),
            "allocator_config": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
        }
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        sync()

    # The metered step: saved activations and live tensors per piece (any device), the peak operator (CUDA).
    saved = SavedActivationMeter(exclude=existing)
    meter = OpPeakMeter(existing, device, saved, params)
    windows: list[dict[str, int]] = []

    def close_window(k: int) -> None:
        windows.append({"saved_peak": saved.peak_bytes, "live_peak": meter.peak_bytes})
        saved.reset_peak()
        meter.peak_bytes = meter.current_bytes
        meter.window = k + 1

    hooks.insert(0, close_window)  # before piece-step frees the gradients: they count in their piece
    start = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    with saved, meter:
        one_step()
        sync()
        close_window(K)  # the optimiser step (piece-step: nothing left to do)
    hooks.remove(close_window)
    for k, w in enumerate(windows):
        w["cuda_peak"] = meter.window_cuda_peak.get(k)
    result["windows"] = windows
    result["live_peak"] = result["existing_bytes"] + max(w["live_peak"] for w in windows)
    if device.type == "cuda":
        top = meter.top
        result["metered_peak_allocated"] = top["peak"]
        result["at_peak"] = {
            "op": top["op"], "window": top["window"], "state_and_batch": result["existing_bytes"],
            "untracked_before_step": start - result["existing_bytes"],
            "saved_activations": top["saved"], "gradients": top["grads"],
            "other_step_tensors": top["live_before"] - top["saved"] - top["grads"],
            "op_outputs": top["outputs"], "op_scratch": top["scratch"],
            "between_ops_untracked": top["allocated_before"] - start - top["live_before"],
        }
        result["scratch_by_op"] = dict(sorted(meter.scratch_by_op.items(), key=lambda kv: -kv[1])[:8])
        if spec.get("snapshot"):
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            sync()
            base = torch.cuda.memory_allocated(device)
            try:
                torch.cuda.memory._record_memory_history(enabled="all", context="alloc", stacks="python",
                                                         max_entries=2_000_000)
                one_step()
                sync()
                snapshot = torch.cuda.memory._snapshot(device)
                torch.cuda.memory._record_memory_history(enabled=None)
                result["snapshot_peak"] = peak_blocks(snapshot["device_traces"][device.index or 0], base)
            except Exception as error:  # a private API: its absence must not cost the rest of the breakdown
                result["snapshot_error"] = f"{type(error).__name__}: {error}"[:300]
    learner.piece_done = None
    return result


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """`breakdown(spec)` in a new process with the variant's environment."""
    env = {**os.environ, **VARIANTS[spec["variant"]].get("env", {})}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {**spec, "error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def mib(value: int | None) -> str:
    return "–" if value is None else f"{value / MiB:,.0f}"


def report(rows: list[dict[str, Any]], cuda: bool) -> None:
    """The tables, printed."""
    ok = [r for r in rows if "error" not in r]
    for r in rows:
        if "error" in r:
            print(f"{r['variant']} K={r['K']}: failed: {r['error']}")
    e2e = {r["variant"]: r for r in ok if r["K"] == 1}
    local = [r for r in ok if r["K"] > 1]
    for r in local:
        print(f"\n## {r['method']} K={r['K']} cuts {r['cuts']}, variant {r['variant']} ({r['device']})")
        s = r["state"]
        print(f"state MiB: parameters {mib(s['parameters_pieces'])} + aux nets {mib(s['parameters_aux'])}, "
              f"gradients {mib(s['gradients'])}, optimiser {mib(s['optimizer_state'])}, batch {mib(s['batch'])}, "
              f"buffers {mib(s['buffers'])}")
        print("| piece | saved: blocks (aux nets) MiB | saved peak MiB | live-tensor peak MiB | CUDA allocated peak MiB |"
              "\n|---|---|---|---|---|")
        for k, w in enumerate(r["windows"]):
            prof = r["piece_saved_profile"][k] if k < r["K"] else None
            label = str(k + 1) if k < r["K"] else "optimiser step"
            profile = f"{mib(prof[0])} ({mib(prof[1])})" if prof else "–"
            print(f"| {label} | {profile} | {mib(w['saved_peak'])} | {mib(w['live_peak'])} | {mib(w['cuda_peak'])} |")
    print("\n| variant | E2E peak MiB | local peak MiB | local / E2E | live tensors: local / E2E | "
          "local reserved MiB | peak in | scratch at peak MiB |\n|---|---|---|---|---|---|---|---|")
    for r in local:
        base = e2e.get(r["variant"])
        live_ratio = f"{100 * r['live_peak'] / base['live_peak']:.1f} %" if base else "–"
        if not cuda:
            print(f"| {r['variant']} | – | – | – | {live_ratio} | – | – | – |")
            continue
        a, p = r["allocator"], r["at_peak"]
        ratio = f"{100 * a['peak_allocated'] / base['allocator']['peak_allocated']:.1f} %" if base else "–"
        where_ = f"piece {p['window'] + 1}" if p["window"] < r["K"] else "optimiser step"
        print(f"| {r['variant']} | {mib(base['allocator']['peak_allocated']) if base else '–'} | "
              f"{mib(a['peak_allocated'])} | {ratio} | {live_ratio} | {mib(a['peak_reserved'])} | "
              f"{where_}, {p['op']} | {mib(p['op_scratch'])} |")
    if not cuda:
        print("\nCUDA: not available (the allocator's peak, reserved memory, cuDNN workspace, fragmentation and "
              "the allocation snapshot need a CUDA device; the rows above are the CPU's live-tensor counts)")
        return
    for r in ok:
        p = r["at_peak"]
        print(f"\nat the peak, {'E2E' if r['K'] == 1 else r['method'] + ' K=' + str(r['K'])} {r['variant']} "
              f"({mib(r['allocator']['peak_allocated'])} MiB plain, {mib(r['metered_peak_allocated'])} MiB metered): "
              + ", ".join(f"{k} {mib(v)}" for k, v in p.items() if k not in ("op", "window")))
        print("  most scratch per operator MiB: " + ", ".join(f"{k} {mib(v)}" for k, v in r["scratch_by_op"].items()))
        if "snapshot_peak" in r:
            print("  largest blocks at the peak: " + "; ".join(f"{mib(b['bytes'])} MiB {b['where']}"
                                                           for b in r["snapshot_peak"]["largest"][:6]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet110")
    parser.add_argument("--method", default="infopro-contrast")
    parser.add_argument("--K", type=int, default=4)
    parser.add_argument("--cuts", default="balanced")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--channels-last", action="store_true", help="(Table 3 on the GPU ran without)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--no-snapshot", dest="snapshot", action="store_false",
                        help="skip the allocation snapshot (taken for the default variant)")
    parser.add_argument("--out", default="benchmarks/results/cuda_memory_breakdown/breakdown.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(breakdown(spec, torch.device(spec["device"]))))
        return 0

    device = pick_device(args.device)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    base = {"arch": args.arch, "method": args.method, "batch_size": args.batch_size,
            "channels_last": args.channels_last, "device": str(device)}
    cuts: list[int] = []
    if args.K > 1:
        # Resolved once (profiled at this batch on this device, as `infopro bench` does), then given to every
        # child as a list.
        learner, _, _ = build({**base, "K": args.K, "cuts": args.cuts}, device)
        cuts = learner.cuts
        del learner
        if device.type == "cuda":
            torch.cuda.empty_cache()
    rows = []
    if device.type == "cuda":
        for variant in variants:
            for K in (1, args.K):
                spec = {**base, "K": K, "cuts": cuts, "variant": variant,
                        "snapshot": args.snapshot and variant == "default"}
                print(f"{variant} K={K} ...", file=sys.stderr, flush=True)
                rows.append(run_child(spec))
    else:  # the CPU has no allocator variants: the default one, in this process
        for K in (1, args.K):
            rows.append(breakdown({**base, "K": K, "cuts": cuts, "variant": "default"}, device))
    print(f"{args.arch}, {args.method} K={args.K} cuts {cuts}, batch {args.batch_size}, {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    report(rows, device.type == "cuda")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {"torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    out.write_text(json.dumps({**base, "K": args.K, "cuts": cuts, **info, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

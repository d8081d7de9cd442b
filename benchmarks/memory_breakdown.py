"""Where InfoPro's peak memory goes, piece by piece, and what loss-preserving fixes change it.

For each K and cut choice, runs one `train_step` piece by piece under
`LiveTensorMeter` (every tensor alive, gradients and recomputation included)
and reports each piece's live peak, the part of it that the piece's
auxiliary nets save (from the saved-activation profile), and the step's peak
against E2E measured the same way. Variants, all with the same loss:
  paper      the published cuts;
  balanced   the exact memory-balanced cuts (aux nets included);
  +aux-ckpt  balanced cuts, auxiliary nets under non-reentrant checkpointing
             (their activations are recomputed in backward instead of kept);
  +chunked-decoder  the decoder's upsample + first conv over 16-channel chunks,
             recomputed chunk by chunk in backward (`decoder_chunk_channels=16`),
             so the full-resolution upsampled feature and its gradient never
             exist whole (same loss up to summation order); balanced cuts
             re-optimised for it.

    python benchmarks/memory_breakdown.py --arch resnet110 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint

import infopro
from infopro.bench.live_memory import LiveTensorMeter
from infopro.errors import InfoProError

MiB = 2**20


def live_piece_peaks(learner: infopro.LocalLearner, batch_size: int, aux_checkpoint: bool) -> list[int]:
    """Each piece's live peak (bytes above what was alive before it) during one step."""
    x = torch.randn(batch_size, *learner.input_shape, generator=torch.Generator().manual_seed(0))
    y = torch.arange(batch_size) % 10
    image = learner.unnormalize(x)
    peaks, h = [], x
    with LiveTensorMeter(exclude=[*learner.state_dict().values(), x, y, image]) as meter:
        for k, (piece, objective) in enumerate(zip(learner.pieces, learner.aux)):
            before = meter.peak_bytes = meter.current_bytes
            if aux_checkpoint and k < learner.K - 1:
                h_out = piece(h)
                loss = checkpoint(objective, h_out, y, image, use_reentrant=False)
                loss.backward()
                h = h_out.detach()
            else:
                h, _ = infopro.local_step(piece, objective, h, y, image)
            peaks.append(meter.peak_bytes - before)
            learner.zero_grad(set_to_none=True)
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet110")
    parser.add_argument("--method", default="infopro-contrast")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--K", type=int, nargs="+", default=[2, 3, 4, 8, 16])
    parser.add_argument("--out", default="benchmarks/results/memory_breakdown.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    e2e = infopro.LocalLearner(infopro.build_backbone(args.arch), 1, "e2e")
    e2e_peak = live_piece_peaks(e2e, args.batch_size, False)[0]
    rows = []
    for K in args.K:
        for name, preset, aux_ckpt, chunk in [
            ("paper", "paper", False, 0), ("paper-balanced", "paper-balanced", False, 0), ("balanced", "balanced", False, 0),
            ("balanced +aux-ckpt", "balanced", True, 0), ("balanced +chunked-decoder", "balanced", False, 16),
        ]:
            torch.manual_seed(0)
            try:
                learner = infopro.LocalLearner(infopro.build_backbone(args.arch), K, args.method, cuts=preset,
                                               profile_batch_size=args.batch_size, decoder_chunk_channels=chunk)
            except InfoProError:
                continue  # no published cuts at this K
            peaks = live_piece_peaks(learner, args.batch_size, aux_ckpt)
            aux = [a for _, a in learner.piece_memory(args.batch_size)]
            worst = max(range(K), key=peaks.__getitem__)
            rows.append({"K": K, "variant": name, "cuts": learner.cuts, "piece_peak_bytes": peaks,
                         "piece_aux_saved_bytes": aux, "peak_piece": worst + 1,
                         "peak_bytes": max(peaks), "ratio_to_e2e": max(peaks) / e2e_peak})

    print(f"{args.arch}, {args.method}, batch {args.batch_size}: live peak per piece (MiB; aux nets' saved share in brackets)")
    print(f"E2E: {e2e_peak / MiB:.0f} MiB\n")
    print("| K | variant | cuts | peak vs E2E | peak piece | pieces: live peak (aux share) |\n|---|---|---|---|---|---|")
    for r in rows:
        pieces = ", ".join(f"{p / MiB:.0f} ({a / MiB:.0f})" for p, a in zip(r["piece_peak_bytes"], r["piece_aux_saved_bytes"]))
        print(f"| {r['K']} | {r['variant']} | {r['cuts']} | {100 * r['ratio_to_e2e']:.1f} % | {r['peak_piece']} | {pieces} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"arch": args.arch, "method": args.method, "batch_size": args.batch_size,
                               "e2e_peak_bytes": e2e_peak, "torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

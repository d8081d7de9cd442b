"""The first SGD steps of a plain CIFAR ResNet, without infopro's training code: is a loss jump the recipe's?

    python benchmarks/first_steps.py --batch-size 1024 --lr 0.8 --steps 6 --warmup-epochs 0
    python benchmarks/first_steps.py --batch-size 128 --lr 0.1 --steps 20 --warmup-epochs 0
    python benchmarks/first_steps.py --batch-size 1024 --lr 0.8 --steps 30      # the authors' warm-up

The learning rate follows `infopro.train.schedule` per epoch (an epoch = --train-subset images): by default
the authors' CIFAR recipe, a 10-epoch warm-up from 0.01 and a cosine over 160 epochs counted from 1;
--warmup-epochs 0 gives the constant --lr of the first epoch without it.

`infopro.build_backbone` (the same weights as `infopro train --seed 0`), `torch.optim.SGD` with the configs'
Nesterov momentum 0.9 and weight decay 1e-4, cross-entropy, and batches of CIFAR-10 (JPEG) training images
with the paper's augmentation (`infopro.data`'s memory path, a stratified subset as `--train-subset`). Prints the loss and the gradient norm of each step and
writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import infopro
from infopro.data import DataOptions, make_loader, open_data
from infopro.train.schedule import Schedule, build_lr_scheduler

ROOT = Path(__file__).resolve().parents[1]
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "cifar10-jpeg")
    parser.add_argument("--arch", default="resnet32")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=0.8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--train-subset", type=int, default=10240, help="stratified, as `infopro train`'s")
    parser.add_argument("--warmup-epochs", type=int, default=10, help="0: no warm-up (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=160, help="the cosine's length (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "first_steps.json")
    args = parser.parse_args()
    data = open_data("cifar10", args.data_dir, DataOptions(path="memory", train_subset=args.train_subset,
                                                            test_subset=10, progress=False))
    loader = make_loader(data, data.train, "cpu", args.batch_size, train=True, seed=0)
    torch.manual_seed(0)
    net = infopro.build_backbone(args.arch, num_classes=10).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    schedule = Schedule(lr=args.lr, epochs=args.epochs, first_epoch=1 if args.warmup_epochs else 0,
                        warmup_epochs=args.warmup_epochs)
    scheduler = build_lr_scheduler(optimizer, schedule) if args.warmup_epochs else None
    steps, batches = [], iter(loader)
    while len(steps) < args.steps:
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            if scheduler is not None:
                scheduler.step()  # per epoch, as the authors' train.py
            continue
        loss = torch.nn.functional.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)), y)
        optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in net.parameters()])).item()
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        steps.append({"step": len(steps) + 1, "lr": lr, "loss": loss.item(), "grad_norm": grad_norm})
        print(f"step {len(steps):>3}  lr {lr:.4f}  loss {loss.item():7.3f}  gradient norm {grad_norm:6.2f}", flush=True)
    results = {"arch": args.arch, "batch_size": args.batch_size, "lr": args.lr, "warmup_epochs": args.warmup_epochs,
               "images": len(data.train), "max_loss": max(s["loss"] for s in steps), "steps": steps}
    print(f"highest loss over {len(steps)} steps: {results['max_loss']:.3f}")
    key = lambda r: (r["arch"], r["batch_size"], r["lr"], r.get("warmup_epochs", 0), r["images"])
    previous = json.loads(args.out.read_text()) if args.out.is_file() else []
    previous = [r for r in previous if key(r) != key(results)]
    args.out.write_text(json.dumps(previous + [results], indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

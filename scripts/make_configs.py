"""Write configs/cifar10/*.yaml: one file per row of the paper's CIFAR-10 table (and InfoPro*).

Lambdas are the published ones (the reference code's CIFAR-10 commands, given
for InfoPro Contrast; InfoPro Softmax uses the same). Run:
    python scripts/make_configs.py
"""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1] / "configs" / "cifar10"

# Recipe: SGD Nesterov 0.9, wd 1e-4, 160 epochs cosine, batch 1024 at lr 0.8.
RECIPE = dict(dataset="cifar10", epochs=160, batch_size=1024, lr=0.8, schedule="cosine",
              momentum=0.9, nesterov=True, weight_decay=1e-4, seed=0)

# (lambda1, lambda2) of the first piece, then of piece K-1.
INFOPRO_LAMBDAS = {
    "resnet32": {2: [5, 1, 0, 0], 4: [6, 0, 1, 2], 8: [5, 0, 0, 2], 16: [5, 0.05, 0.2, 0.5]},
    "resnet110": {2: [5, 0.5, 0, 0], 4: [1, 0, 0, 1], 8: [5, 0, 0, 1], 16: [5, 0, 0.5, 1]},
}
BALANCED_LAMBDAS = {2: [5, 0.1, 0, 0], 3: [5, 0, 5, 0.1], 4: [5, 0, 5, 0.1]}


def write(name: str, **settings) -> None:
    path = ROOT / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, **settings}, sort_keys=False))


def main() -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    for arch, by_K in INFOPRO_LAMBDAS.items():
        write(f"{arch}-e2e", arch=arch, method="e2e", K=1, cuts="paper")
        for K, lambdas in by_K.items():
            for method in ("greedy", "dgl"):
                write(f"{arch}-{method}-K{K}", arch=arch, method=method, K=K, cuts="paper")
            for method in ("infopro-softmax", "infopro-contrast"):
                write(f"{arch}-{method}-K{K}", arch=arch, method=method, K=K, cuts="paper", lambdas=lambdas)
    for K, lambdas in BALANCED_LAMBDAS.items():
        write(f"resnet110-infopro-contrast-K{K}-balanced", arch="resnet110", method="infopro-contrast", K=K,
              cuts="paper-balanced", lambdas=lambdas)
    print(f"wrote {len(list(ROOT.glob('*.yaml')))} files to {ROOT}")


if __name__ == "__main__":
    main()

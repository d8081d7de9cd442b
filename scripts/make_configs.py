"""Write configs/cifar10/*.yaml: one file per row of the paper's CIFAR-10 table (and InfoPro*), and the rivals'.

Lambdas are the published ones (the reference code's CIFAR-10 commands, given
for InfoPro Contrast; InfoPro Softmax uses the same). Run:
    python scripts/make_configs.py
"""

from fractions import Fraction
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


# The rivals' 400-epoch recipe (their papers' CIFAR-10 runs; compare methods only within one recipe).
RIVAL_RECIPE = {**RECIPE, "epochs": 400}
NUM_LAYERS = {"resnet32": 16, "resnet110": 55}  # blocks, the stem included: the rivals' "layers"
# InfoPro's lambdas at the rivals' deepest splits (AugLocal's run.sh, InfoPro rows).
DEEP_LAMBDAS = {("resnet32", 16): [5, 0.05, 0.2, 0.5], ("resnet110", 55): [5, 0, 0.5, 1],
                ("resnet110", 32): [5, 0, 0.5, 1]}


def write_rival(name: str, **settings) -> None:
    write(name, **{**RIVAL_RECIPE, **settings})


def write_rivals() -> None:
    """Rows of the rivals' CIFAR-10 tables, as their public code runs them (see docs/RIVALS.md in README).

    PredSim and AugLocal (AugLocal's code): one local layer per piece, ResNet-32 with 16 layers,
    ResNet-110 with 55. AugLocal's K counts layers: its last piece keeps the last d layers, so it runs
    K - d pieces cut after layers 0 .. K - d - 2 (README: d=2 for ResNet-32, d=3 for ResNet-110;
    run.sh: d = 1, 3, 5; pyramid coefficient 0.5). MAN and HPFF (built on InfoPro's code): InfoPro's
    cuts and published lambdas at K = 2, 4, 8, 16. MAN++ (its README): ResNet-32 K = 8, 16,
    ResNet-110 K = 32, 55 (no published cut list is used here beyond InfoPro's: 'even' where InfoPro has none).
    """
    for arch, layers in NUM_LAYERS.items():
        write_rival(f"{arch}-predsim-K{layers}", arch=arch, method="predsim", K=layers, cuts="even",
                    lambdas=[0.99, 0.01, 0.99, 0.01])
        readme_depth = 2 if arch == "resnet32" else 3
        for depth in sorted({1, readme_depth, 3, 5}):
            pieces = layers - depth
            write_rival(f"{arch}-auglocal-K{layers}-d{depth}", arch=arch, method="auglocal", K=pieces,
                        cuts=list(range(pieces - 1)), aux_depth=depth, aux_pyramid=0.5)
        for K, lambdas in INFOPRO_LAMBDAS[arch].items():
            write_rival(f"{arch}-man-K{K}", arch=arch, method="man", K=K, cuts="paper", lambdas=lambdas,
                        ema_momentum=0.995)
    write_hpff()
    for arch, Ks in {"resnet32": (8, 16), "resnet110": (32, 55)}.items():
        for K in Ks:
            lambdas = INFOPRO_LAMBDAS[arch].get(K) or DEEP_LAMBDAS[(arch, K)]
            write_rival(f"{arch}-man++-K{K}", arch=arch, method="man++", K=K,
                        cuts="paper" if K in INFOPRO_LAMBDAS[arch] else "even", lambdas=lambdas, ema_momentum=0.995)


# HPFF's README: ResNet-32 "--local_module_num 16", ResNet-110 "--local_module_num 55", cross-entropy
# (method hpff), head 2c2f, lambdas 5 0.5 0 0. Its lists for these K (network/config.py) have one entry
# fewer than K, the stem merged into the first module: 15 and 54 pieces, cut after blocks 1 .. K - 2.
HPFF_LAMBDAS = [5, 0.5, 0, 0]
HPFF_README_K = {"resnet32": 16, "resnet110": 55}


def hpff_lambdas(pieces: int, reference_K: int) -> list[float]:
    """The README's lambdas for `pieces` pieces where the reference's ratio is i / (reference_K - 2):
    the last pair moved so that our ratio i / (pieces - 2) gives the same weights."""
    if pieces == reference_K or pieces <= 2:
        return HPFF_LAMBDAS
    first, last = HPFF_LAMBDAS[:2], HPFF_LAMBDAS[2:]
    scale = Fraction(pieces - 2, reference_K - 2)
    return first + [float(Fraction(f) + scale * (Fraction(l) - Fraction(f))) for f, l in zip(first, last)]


def write_hpff() -> None:
    """HPFF rows: InfoPro's cuts at K = 2, 4, 8 (and ResNet-110's 16), as its lists; its README's K."""
    for arch, readme_K in HPFF_README_K.items():
        for K in INFOPRO_LAMBDAS[arch]:
            if K != readme_K:
                write_rival(f"{arch}-hpff-K{K}", arch=arch, method="hpff", K=K, cuts="paper", lambdas=HPFF_LAMBDAS,
                            hpff_weights=[0.001, 0.999])
        pieces = readme_K - 1
        write_rival(f"{arch}-hpff-K{readme_K}", arch=arch, method="hpff", K=pieces, cuts=list(range(1, pieces)),
                    lambdas=hpff_lambdas(pieces, readme_K), hpff_weights=[0.001, 0.999])


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
    write_rivals()
    print(f"wrote {len(list(ROOT.glob('*.yaml')))} files to {ROOT}")


if __name__ == "__main__":
    main()

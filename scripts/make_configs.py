"""Write configs/<dataset>/*.yaml: one file per row of the paper's tables (CIFAR-10, SVHN, STL-10, ImageNet;
InfoPro* included), the rivals', and configs/imagenet/vit_small-e2e-deit.yaml, DeiT-S's recipe (written as
text: each value says its source). Every value's source (file and line of the authors' code) is in
docs/recipes.md, and tests/test_recipes.py fails when a config drifts from that page.

Lambdas are the published ones (the reference code's commands, given for InfoPro Contrast; InfoPro Softmax
uses the same). Run:
    python scripts/make_configs.py
"""

from fractions import Fraction
from pathlib import Path

import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ROOT = CONFIGS / "cifar10"

# Recipe (the authors' CIFAR train.py with --cos_lr): SGD Nesterov 0.9, wd 1e-4, 160 epochs, batch 1024 at lr 0.8,
# cosine set per epoch from the 1-based epoch, after a 10-epoch warm-up from 0.01.
RECIPE = dict(dataset="cifar10", epochs=160, batch_size=1024, lr=0.8, schedule="cosine", schedule_first_epoch=1,
              warmup_epochs=10, warmup_start=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4, seed=0)
# SVHN as CIFAR-10; STL-10 at batch 128, lr 0.1 (train.py's training_configurations).
DATASET_RECIPES = {"svhn": {**RECIPE, "dataset": "svhn"},
                   "stl10": {**RECIPE, "dataset": "stl10", "batch_size": 128, "lr": 0.1}}
# comand.sh, ResNet-110 InfoPro Contrast: (lambda1, lambda2) of the first piece, then of piece K-1.
DATASET_LAMBDAS = {
    "svhn": {2: [1, 0.1, 0, 0], 4: [5, 0, 0.5, 1], 8: [5, 0, 0.5, 2], 16: [5, 0.2, 0.5, 1]},
    "stl10": {2: [10, 1, 0, 0], 4: [20, 0.2, 5, 2], 8: [20, 0.2, 5, 1], 16: [20, 0.5, 10, 0.1]},
}
STL10_BALANCED_LAMBDAS = {2: [20, 1, 0, 0], 3: [20, 0.5, 5, 2], 4: [20, 0.5, 10, 1]}
# imagenet_DDP.py and its README: batch 1024, lr 0.4, 90 epochs, SGD Nesterov 0.9, wd 1e-4, cosine from the
# 0-based epoch, no warm-up; K=2 with InfoPro's softmax head; (ixx_r, ixy_r) per network.
IMAGENET_RECIPE = dict(dataset="folder", image_size=224, data_path="stream", epochs=90, batch_size=1024, lr=0.4,
                       schedule="cosine", schedule_first_epoch=0, warmup_epochs=0, momentum=0.9, nesterov=True,
                       weight_decay=1e-4, seed=0, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
IMAGENET_LAMBDAS = {"resnet101": [5, 0.75, 0, 0], "resnet152": [5, 1, 0, 0], "resnext101_32x8d": [5, 0.75, 0, 0]}

# (lambda1, lambda2) of the first piece, then of piece K-1.
INFOPRO_LAMBDAS = {
    "resnet32": {2: [5, 1, 0, 0], 4: [6, 0, 1, 2], 8: [5, 0, 0, 2], 16: [5, 0.05, 0.2, 0.5]},
    "resnet110": {2: [5, 0.5, 0, 0], 4: [1, 0, 0, 1], 8: [5, 0, 0, 1], 16: [5, 0, 0.5, 1]},
}
BALANCED_LAMBDAS = {2: [5, 0.1, 0, 0], 3: [5, 0, 5, 0.1], 4: [5, 0, 5, 0.1]}


def write(name: str, folder: Path | None = None, recipe: dict = RECIPE, **settings) -> None:
    folder = folder or ROOT
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**recipe, **settings}, sort_keys=False))


def write_other_datasets() -> None:
    """SVHN and STL-10 (ResNet-110, comand.sh), and the ImageNet K=2 runs (imagenet_DDP.py's README)."""
    for dataset, by_K in DATASET_LAMBDAS.items():
        folder, recipe = CONFIGS / dataset, DATASET_RECIPES[dataset]
        write("resnet110-e2e", folder, recipe, arch="resnet110", method="e2e", K=1, cuts="paper")
        for K, lambdas in by_K.items():
            write(f"resnet110-infopro-contrast-K{K}", folder, recipe, arch="resnet110", method="infopro-contrast",
                  K=K, cuts="paper", lambdas=lambdas)
    for K, lambdas in STL10_BALANCED_LAMBDAS.items():
        write(f"resnet110-infopro-contrast-K{K}-balanced", CONFIGS / "stl10", DATASET_RECIPES["stl10"],
              arch="resnet110", method="infopro-contrast", K=K, cuts="paper-balanced-stl10", lambdas=lambdas)
    for arch, lambdas in IMAGENET_LAMBDAS.items():
        write(f"{arch}-e2e", CONFIGS / "imagenet", IMAGENET_RECIPE, arch=arch, method="e2e", K=1, cuts="paper")
        write(f"{arch}-infopro-softmax-K2", CONFIGS / "imagenet", IMAGENET_RECIPE, arch=arch,
              method="infopro-softmax", K=2, cuts="paper", lambdas=lambdas)


# The rivals' 400-epoch recipe (their papers' CIFAR-10 runs; compare methods only within one recipe).
RIVAL_RECIPE = {**RECIPE, "epochs": 400}
NUM_LAYERS = {"resnet32": 16, "resnet110": 55}  # blocks, the stem included: the rivals' "layers"


def write_rival(name: str, **settings) -> None:
    write(name, **{**RIVAL_RECIPE, **settings})


def write_rivals() -> None:
    """Rows of the rivals' CIFAR-10 tables, as their public code runs them (see docs/RIVALS.md in README).

    PredSim and AugLocal (AugLocal's code): one local layer per piece, ResNet-32 with 16 layers,
    ResNet-110 with 55. AugLocal's K counts layers: its last piece keeps the last d layers, so it runs
    K - d pieces cut after layers 0 .. K - d - 2 (README: d=2 for ResNet-32, d=3 for ResNet-110;
    run.sh: d = 1, 3, 5; pyramid coefficient 0.5). HPFF (built on InfoPro's code): InfoPro's
    cuts and published lambdas at K = 2, 4, 8, 16. MAN and MAN++: see `write_man`.
    """
    for arch, layers in NUM_LAYERS.items():
        write_rival(f"{arch}-predsim-K{layers}", arch=arch, method="predsim", K=layers, cuts="even",
                    lambdas=[0.99, 0.01, 0.99, 0.01])
        readme_depth = 2 if arch == "resnet32" else 3
        for depth in sorted({1, readme_depth, 3, 5}):
            pieces = layers - depth
            write_rival(f"{arch}-auglocal-K{layers}-d{depth}", arch=arch, method="auglocal", K=pieces,
                        cuts=list(range(pieces - 1)), aux_depth=depth, aux_pyramid=0.5)
    write_hpff()
    write_man()


# MAN and MAN++ (their code on InfoPro's): the reference's split tables (`networks/config.py`, the same file in
# both), (stage, block) of the last block of each piece but the last (whose entry, the end of the network,
# is left out), stage 1 = layer1.
MAN_SPLITS = {
    "resnet32": {2: [(2, 1)], 4: [(1, 2), (2, 1), (3, 0)],
                 8: [(1, 0), (1, 2), (1, 4), (2, 1), (2, 3), (3, 0), (3, 2)],
                 16: [(s, b) for s in (1, 2, 3) for b in range(5)][:-1]},  # 15 entries: K=16 is a label
    "resnet110": {2: [(2, 8)], 4: [(1, 11), (2, 7), (3, 3)],
                  8: [(1, 4), (1, 11), (2, 0), (2, 7), (2, 14), (3, 3), (3, 10)],
                  16: [(1, 1), (1, 4), (1, 7), (1, 10), (1, 13), (1, 16), (2, 1), (2, 4), (2, 7), (2, 11), (2, 15),
                       (3, 1), (3, 5), (3, 9), (3, 13)],
                  32: [(1, b) for b in (1, 2, 4, 5, 7, 9, 11, 13, 14, 16, 17)]
                      + [(2, b) for b in (1, 2, 4, 5, 7, 9, 11, 13, 14, 16, 17)]
                      + [(3, b) for b in (1, 3, 4, 6, 7, 9, 11, 13, 15)],
                  55: [(s, b) for s in (1, 2, 3) for b in range(18)][:-1]},  # 54 entries: K=55 is a label
}
BLOCKS_PER_STAGE = {"resnet32": 5, "resnet110": 18}
# Their READMEs' CIFAR-10 commands (MAN: ResNet-32 K=16; MAN++: the same flags): cross-entropy on the
# default 2c2f head, --ixx_1 5 --ixy_1 0.5 --ixx_2 0 --ixy_2 0, --momentum 0.995 (the EMA's).
MAN_README_LAMBDAS = [5, 0.5, 0, 0]
# At K=4 the reference's ratio stage / (K - 2) of the local pieces' next blocks (the stem piece aside) is 0.5,
# 1 and 1.5: the README's lambdas would give them (2.5, 0.25), (0, 0) (never trained) and (-2.5, -0.25)
# (gradient ascent), which we refuse.
# K=4 is not one of their published settings (MAN++: ResNet-32 K=8/16, ResNet-110 K=32/55), so these
# rows keep the README's first pair for every piece.
MAN_K4_LAMBDAS = [5, 0.5]


def man_cut(arch: str, stage: int, block: int) -> int:
    """Our block index of the reference's (stage, block): block 0 is the stem."""
    return 1 + (stage - 1) * BLOCKS_PER_STAGE[arch] + block


def write_man() -> None:
    """MAN: the stem is part of piece 1, so the reference's split table gives our cuts as it is: K pieces,
    except ResNet-32 K=16, whose 15 entries are 15 pieces. MAN++: the stem is a piece of its own (LB_first /
    EMA_first), so its K=4 and K=8 are our 5 and 9 pieces, its ResNet-32 K=16 (15 entries) our 16, ResNet-110
    K=32 our 33 and K=55 (54 entries) our 55. `lambda_K` keeps the reference's K in its lambda ratio
    stage / (K - 2) where the default (MAN: K, MAN++: K - 1) is not it. File names carry the reference's K."""
    for arch, splits in MAN_SPLITS.items():
        for ref_K, positions in splits.items():
            cuts = [man_cut(arch, *p) for p in positions]
            lambdas = MAN_K4_LAMBDAS if ref_K == 4 else MAN_README_LAMBDAS
            if ref_K <= 16:  # MAN's CIFAR-10 rows
                K = len(cuts) + 1
                extra = {} if K == ref_K else {"lambda_K": ref_K}
                write_rival(f"{arch}-man-K{ref_K}", arch=arch, method="man", K=K, cuts=cuts, lambdas=lambdas,
                            ema_momentum=0.995, **extra)
            if (arch, ref_K) in {("resnet32", 4), ("resnet32", 8), ("resnet32", 16), ("resnet110", 32),
                                 ("resnet110", 55)}:  # MAN++: its README's settings, and K=4
                K = len(cuts) + 2
                extra = {} if K - 1 == ref_K else {"lambda_K": ref_K}
                write_rival(f"{arch}-man++-K{ref_K}", arch=arch, method="man++", K=K, cuts=[0, *cuts],
                            lambdas=lambdas, ema_momentum=0.995, **extra)


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


# DeiT-S's recipe as a commented YAML file (yaml.safe_dump drops comments).
DEIT_SMALL = """\
# DeiT-S on ImageNet with DeiT's recipe, end to end (K = 1): the baseline a local method on vit_small is
# compared with. Written by scripts/make_configs.py. Sources: the DeiT paper (Touvron et al. 2021, Table 9:
# "ingredients and hyper-parameters") and the defaults of main.py in facebookresearch/deit.
# Run: infopro train -c configs/imagenet/vit_small-e2e-deit.yaml --data-dir IMAGENET (train/ and val/ class folders).
# A local method: add e.g. --method infopro-softmax --K 2 (the contrastive methods take no mixup/cutmix:
# their loss needs class labels).
# Not reproduced here: stochastic depth (drop path 0.1), repeated augmentation (RASampler), bicubic resizing.
dataset: folder
image_size: 224            # DeiT: --input-size 224
arch: vit_small            # DeiT-S: patch 16, width 384, depth 12, 6 heads (src/infopro/models/vit.py)
method: e2e
K: 1
epochs: 300                # paper Table 9 and main.py: 300 epochs
batch_size: 1024           # paper Table 9: batch size 1024
optimizer: adamw           # paper Table 9 / main.py --opt adamw (eps 1e-8, betas 0.9, 0.999)
lr: 0.001                  # paper Table 9: 5e-4 * batchsize / 512 (main.py: linear_scaled_lr) = 1e-3 at 1024
weight_decay: 0.05         # paper Table 9 / main.py --weight-decay 0.05
decay_norm_bias: false     # timm's create_optimizer (main.py): no decay on norms, biases, pos_embed, cls_token
schedule: cosine           # paper Table 9 / main.py --sched cosine (timm's CosineLRScheduler, stepped per epoch)
schedule_first_epoch: 0    # timm: lr_scheduler.step(epoch) with the 0-based epoch
min_lr: 1.0e-5             # main.py --min-lr 1e-5 (the cosine's floor)
warmup_epochs: 5           # paper Table 9 / main.py --warmup-epochs 5
warmup_start: 1.0e-6       # main.py --warmup-lr 1e-6
warmup_to: peak            # timm's warm-up rises linearly to --lr, not to the cosine's value
label_smoothing: 0.1       # paper Table 9 / main.py --smoothing 0.1
mixup: 0.8                 # paper Table 9 / main.py --mixup 0.8
cutmix: 1.0                # paper Table 9 / main.py --cutmix 1.0
mix_prob: 1.0              # main.py --mixup-prob 1.0
mix_switch_prob: 0.5       # main.py --mixup-switch-prob 0.5 (mode 'batch')
randaugment: [2, 9]        # paper Table 9 "Rand-Augment 9/0.5"; main.py --aa rand-m9-mstd0.5-inc1 (timm: 2 ops)
randaugment_std: 0.5       # the mstd0.5 of that policy
random_erasing: 0.25       # paper Table 9 "Erasing 0.25"; main.py --reprob 0.25 --remode pixel --recount 1
# model_ema: off. main.py keeps an EMA (--model-ema, decay 0.99996) but evaluates and reports the plain model;
# the paper's numbers are the plain model's. Add --model-ema 0.99996 to keep and evaluate one as well.
seed: 0
"""


# The journal paper's Cityscapes runs (the authors' mmseg fork, configs/deeplabv3/infopro_deeplabv3_r101-d8_*
# and their _base_ files): DeepLabV3 on a dilated ResNet-101 V1c, SGD 0.9 (no Nesterov), wd 5e-4, poly 0.9 to 1e-4
# per iteration, 40k iterations, crops 512x1024, batch 8 (2 per GPU on 4 GPUs), FCN auxiliary head 0.4, the
# backbone from ImageNet weights (`--pretrained FILE`: nothing downloads).
CITYSCAPES_RECIPE = dict(task="segment", dataset="cityscapes", arch="deeplabv3_resnet101", iters=40000,
                         batch_size=8, lr=0.01, optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=5e-4,
                         schedule="poly", schedule_per="iteration", poly_power=0.9, min_lr=1e-4,
                         schedule_first_epoch=0, warmup_epochs=0, crop_size=[512, 1024], ignore_index=255,
                         seg_aux_weight=0.4, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], seed=0)
# name suffix -> (batch, lr, crop, (lambda_recons, lambda_task)) of the three InfoPro K=2 configs.
CITYSCAPES_INFOPRO = {"": (8, 0.01, [512, 1024], [1.5, 1]), "-bs12": (12, 0.015, [512, 1024], [1, 0.1]),
                      "-640x1280": (8, 0.015, [640, 1280], [2, 1])}
# CamVid (240 copy) on two CPU cores: our budget, not a paper recipe (docs/segmentation.md, README Results).
CAMVID_RECIPE = dict(task="segment", dataset="segfolder", arch="deeplabv3_resnet18", iters=300, batch_size=8,
                     lr=0.01, optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="poly",
                     schedule_per="iteration", poly_power=0.9, min_lr=1e-4, schedule_first_epoch=0,
                     warmup_epochs=0, crop_size=[96, 128], ignore_index=255, seg_aux_weight=0.4, seed=0)


def write_segmentation() -> None:
    """Cityscapes (the journal paper's DeepLabV3 rows) and the CamVid CPU comparison."""
    folder = CONFIGS / "cityscapes"
    write("deeplabv3_resnet101-e2e", folder, CITYSCAPES_RECIPE, method="e2e", K=1, cuts="paper")
    for suffix, (batch, lr, crop, lambdas) in CITYSCAPES_INFOPRO.items():
        write(f"deeplabv3_resnet101-infopro-softmax-K2{suffix}", folder, CITYSCAPES_RECIPE, batch_size=batch, lr=lr,
              crop_size=crop, method="infopro-softmax", K=2, cuts="paper", lambdas=lambdas)
    folder = CONFIGS / "camvid"
    write("deeplabv3_resnet18-e2e", folder, CAMVID_RECIPE, method="e2e", K=1, cuts="even")
    # The cut inside layer3, after its first block: where the paper cuts ResNet-101 (inside layer3).
    write("deeplabv3_resnet18-infopro-softmax-K2", folder, CAMVID_RECIPE, method="infopro-softmax", K=2,
          cuts="5", lambdas=[1.5, 1])


def write_imagenet() -> None:
    (CONFIGS / "imagenet").mkdir(parents=True, exist_ok=True)
    (CONFIGS / "imagenet" / "vit_small-e2e-deit.yaml").write_text(DEIT_SMALL)


def main() -> None:
    write_imagenet()
    write_segmentation()
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
    write_other_datasets()
    print(f"wrote {len(list(CONFIGS.glob('*/*.yaml')))} files to {CONFIGS}")


if __name__ == "__main__":
    main()

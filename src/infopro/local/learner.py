"""LocalLearner: a backbone cut into K gradient-isolated pieces, each with its own local loss."""

from __future__ import annotations

import copy
import dataclasses
import functools
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..constants import CIFAR_MEAN, CIFAR_STD
from ..errors import InfoProError
from ..models.backbone import SequentialBackbone
from .aux_nets import AuxOptions
from .balance import CutContext, piece_memory, profile_memory
from .cuts import piece_ranges, resolve_cuts
from .methods import Lambdas, PieceContext, get_method
from .losses import SupConTerm
from .objective import LocalObjective, Objective
from .pieces import feature_shapes, split_blocks
from .recompute import RecomputedSequential, parse_recompute, segments_for
from .task import CLASSIFY, LocalTask


@dataclass(frozen=True)
class PieceInfo:
    """What one piece holds: its blocks, output shape and parameter counts."""

    index: int
    blocks: range
    output_shape: tuple[int, ...]
    piece_params: int
    aux_params: int
    recon_weight: float
    task_weight: float


class LocalPair(nn.Module):
    """A piece and its objective as one module, `forward(h, labels, image) -> (h_out, loss)`: the unit a
    data-parallel wrapper (one `DistributedDataParallel` per pair) sees. Holds no state of its own, so
    the learner's keys stay those of its pieces and objectives."""

    def __init__(self, piece: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.piece, self.objective = piece, objective

    def forward(self, h_in: torch.Tensor, labels: torch.Tensor,
                image: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h_out = self.piece(h_in)
        return h_out, self.objective(h_out, labels, image)


def pair_step(
    pair: nn.Module,
    h_in: torch.Tensor,
    labels: torch.Tensor,
    image: torch.Tensor | None = None,
    amp_dtype: torch.dtype | None = None,
    loss_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`local_step` of a `LocalPair` (or of a wrapper around one): forward, `loss_scale * loss` backward.

    `loss_scale` weighs this batch's gradients when several batches make one step (micro-batches, data
    slices); the returned loss is unscaled.
    """
    with torch.autocast(h_in.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        h_out, loss = pair(h_in, labels, image)
    if loss.requires_grad:  # a piece trained only through a later piece's loss (HPFF's first) has none
        (loss if loss_scale == 1 else loss * loss_scale).backward()
    return h_out.detach(), loss.detach()


def local_step(
    piece: nn.Module,
    objective: nn.Module,
    h_in: torch.Tensor,
    labels: torch.Tensor,
    image: torch.Tensor | None = None,
    amp_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train one piece on one batch: forward, local loss, backward.

    With `amp_dtype` (e.g. torch.bfloat16) the forward pass and loss run under
    autocast; the backward pass runs outside it, as PyTorch recommends.

    Gradients accumulate in `.grad` of the piece and its objective; the
    graph is freed before returning. Returns (h_out detached, loss detached):
    the detached output is all the next piece ever sees, so no gradient
    crosses the cut. This is the whole unit of work of a piece, whether it
    runs in this process or on its own device.
    """
    return pair_step(LocalPair(piece, objective), h_in, labels, image, amp_dtype)


class LocalLearner(nn.Module):
    """A backbone cut into K pieces trained by local losses (E2E, Greedy SL, DGL, InfoPro and the rivals).

    `pieces[k]` is an `nn.Sequential` of the backbone's own blocks (the last
    one ends with the backbone's head); `aux[k]` is its `Objective`
    (auxiliary nets + loss, built by the method). Pieces share modules with the backbone, so
    training the learner trains the backbone; `export()` returns a copy.

    Args:
        backbone: a `SequentialBackbone` (see `infopro.build_backbone`).
        K: number of pieces (1 = end-to-end).
        method: a name in `infopro.METHODS`.
        cuts: a preset name ('paper', 'paper-balanced', 'even', 'balanced'), a comma list
            or a list of K-1 block indices after which a piece ends.
        input_shape: (channels, height, width) of one input image.
        num_classes: classes of the task; checked against the backbone's head.
        lambdas: (lambda1, lambda2) of the first piece and of piece K-1, four
            numbers (two: the same for all pieces); default: the method's.
        head: auxiliary head name (default: the method's).
        widen, feature_dim: sizes of the auxiliary nets.
        temperature: of the supervised contrastive loss.
        mean, std: per-channel normalisation of the inputs; the decoder's target
            is the un-normalised image `x * std + mean` in [0, 1].
        profile_batch_size: batch at which cuts='balanced' profiles activation
            memory (saved bytes grow linearly with it, so the cuts hardly depend on it).
        decoder_chunk_channels: > 0 upsamples and convolves the decoder's input in
            chunks of that many channels (same loss, less memory at deep cuts; see `Decoder`).
        method_options: the method's own settings by name (e.g. AugLocal's `depth`, MAN's
            `momentum`); None or missing: the method's defaults (`METHODS.get(name).option_defaults`).
        label_smoothing: of the last piece's cross-entropy (the network's own classifier; DeiT: 0.1);
            the local pieces' heads are auxiliary and keep plain targets.
        task: what the network is trained for (`LocalTask`; default classification). A segmentation task
            (`infopro.tasks`) takes labels (N, H, W) and backbones whose output is a (classes, h, w) map.
        recompute: None (off), N >= 1 or 'auto': each piece trains as N segments under non-reentrant
            gradient checkpointing (`RecomputedSequential`; auto: round(sqrt(its blocks)) per piece), so it
            keeps only segment inputs plus one segment's activations; the same state-dict keys, and
            bitwise the same step on the CPU. Balanced cuts balance the recomputed peaks.
        recompute_aux: with `recompute`: every segment is checkpointed, the last included, and the
            decoder (with its loss) too, so the auxiliary nets' activations never coexist with a
            segment's (one more segment and the decoder recomputed per piece).

    Labels may be class indices (N,) or soft targets (N, classes) (mixup, cutmix), except for a
    supervised contrastive loss, which needs class indices.

    After each optimiser step call `after_optimizer_step()` (a hook no built-in method needs now:
    MAN's EMA copies move inside `train_step`, after each piece's backward, as in its authors' code).

    `amp_dtype` (attribute, default None): set to torch.bfloat16 to run the
    forward passes of `train_step` under autocast.

    `piece_done` (attribute, default None): a callable that `train_step` calls with k right after
    piece k's backward (outside any compiled graph): per-piece timing or memory probes.
    """

    amp_dtype: torch.dtype | None = None
    piece_done: Callable[[int], None] | None = None

    def __init__(
        self,
        backbone: SequentialBackbone,
        K: int,
        method: str,
        cuts: str | Sequence[int] = "paper",
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        lambdas: Lambdas | Sequence[float] | None = None,
        head: str | None = None,
        widen: int = 1,
        feature_dim: int = 128,
        temperature: float = 0.07,
        mean: Sequence[float] = CIFAR_MEAN,
        std: Sequence[float] = CIFAR_STD,
        profile_batch_size: int = 64,
        decoder_chunk_channels: int = 0,
        method_options: Mapping[str, Any] | None = None,
        label_smoothing: float = 0.0,
        task: LocalTask = CLASSIFY,
        recompute: int | str | None = None,
        recompute_aux: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, SequentialBackbone):
            raise InfoProError(
                f"backbone must be a SequentialBackbone (blocks + head), got {type(backbone).__name__}; "
                f"build one with infopro.build_backbone(arch) or infopro.SequentialBackbone(blocks, head)"
            )
        self.method = get_method(method, K)
        refusal = task.refusal(self.method)
        if refusal is not None:
            raise InfoProError(refusal)
        self.task = task
        self.K = K
        self.input_shape = tuple(int(s) for s in input_shape)
        self.lambdas = Lambdas.parse(lambdas if lambdas is not None else self.method.default_lambdas)
        self.method_options = self.method.resolve_options(method_options)
        self.method.check(K, self.lambdas, self.method_options)
        if temperature <= 0:
            raise InfoProError(f"temperature must be > 0, got {temperature}")
        if not 0 <= label_smoothing < 1:
            raise InfoProError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        options = AuxOptions(widen=widen, feature_dim=feature_dim, decoder_chunk_channels=decoder_chunk_channels)
        self.recompute = parse_recompute(recompute)
        self.recompute_aux = bool(recompute_aux)
        if self.recompute_aux and self.recompute is None:
            raise InfoProError("recompute_aux needs recompute (a number of segments or 'auto'); "
                               "pass recompute='auto' too (--recompute auto)")
        recompute_segments = (None if self.recompute is None
                              else functools.partial(segments_for, self.recompute))

        *shapes, out_shape = feature_shapes([*backbone.blocks, backbone.head], self.input_shape)
        task.check_output(out_shape, num_classes)
        if len(mean) != self.input_shape[0] or len(std) != self.input_shape[0]:
            raise InfoProError(
                f"mean and std need one value per input channel ({self.input_shape[0]}), got {mean}, {std}"
            )

        num_blocks = len(backbone.blocks)

        block_shapes = tuple(tuple(int(d) for d in s) for s in shapes)

        def objective_for(k: int, cut: int, start: int | None = None) -> Objective:
            """Piece k's objective when it ends after block `cut` (the last piece: cut = number of blocks) and
            starts at block `start` (None: not known, as for the candidates of cut profiling)."""
            feature_shape = tuple(out_shape) if k == K - 1 else block_shapes[cut]
            return self.method.build(PieceContext(
                k=k, K=K, cut=cut, feature_shape=tuple(int(d) for d in feature_shape), image_shape=self.input_shape,
                num_classes=num_classes, block_shapes=block_shapes, blocks=backbone.blocks, lambdas=self.lambdas,
                head=head, aux=options, temperature=temperature, tokens=backbone.tokens,
                options=self.method_options, stage_sizes=tuple(backbone.stage_sizes),
                label_smoothing=label_smoothing, task=task, start=start, taps=dict(backbone.aux_taps),
            ))

        context = CutContext(
            input_shape=self.input_shape, num_classes=num_classes, batch_size=profile_batch_size,
            objective_for=objective_for, example_targets=task.example_targets,
            # Pieces of equal kind get the same aux nets at the same cut.
            objective_kind=lambda k: self.method.objective_kind(k, K, self.lambdas, self.method_options),
            recompute_segments=recompute_segments, recompute_last=self.recompute_aux,
        )
        self.cuts = resolve_cuts(cuts, backbone, K, context)
        self._cut_context = context
        pieces = split_blocks(backbone.blocks, self.cuts, backbone.head)
        if recompute_segments is not None:  # same modules, same names: the state-dict keys do not change
            pieces = [RecomputedSequential.of(p, recompute_segments(len(p)), self.recompute_aux) for p in pieces]
        self.pieces = nn.ModuleList(pieces)
        ends = [*self.cuts, num_blocks]
        objectives = [objective_for(k, cut, ends[k - 1] + 1 if k else 0) for k, cut in enumerate(ends)]
        # The auxiliary nets live where the backbone lives, in its precision and memory format.
        param = next(backbone.parameters())
        self.aux = nn.ModuleList(objectives).to(device=param.device, dtype=param.dtype)
        if self.recompute_aux:
            for module in self.aux.modules():
                if isinstance(module, LocalObjective) and module.decoder is not None:
                    module.recompute_decoder = True
        conv_weight = next((p for p in backbone.parameters() if p.dim() == 4 and p.shape[-1] > 1), None)
        if conv_weight is not None and not conv_weight.is_contiguous() and conv_weight.is_contiguous(memory_format=torch.channels_last):
            self.aux.to(memory_format=torch.channels_last)
        for name, values in (("mean", mean), ("std", std)):
            tensor = torch.tensor(values, device=param.device, dtype=param.dtype).view(1, -1, 1, 1)
            self.register_buffer(name, tensor, persistent=False)
        # Kept out of the module tree: its blocks already are the pieces' modules.
        object.__setattr__(self, "_backbone", backbone)
        self._output_shapes = [tuple(shapes[c]) for c in self.cuts] + [tuple(out_shape)]

    @property
    def takes_soft_targets(self) -> bool:
        """Whether every loss accepts soft targets (N, classes) (mixup, cutmix): none is supervised contrastive."""
        return not any(isinstance(m, SupConTerm) for m in self.aux.modules())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits through all pieces (inference; call `.eval()` first for BatchNorm statistics)."""
        for piece in self.pieces:
            x = piece(x)
        return x

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        """One local-learning step on a batch; gradients are left in `.grad` (no optimiser step).

        Each piece runs forward, its local loss runs backward right away (so only
        one piece's graph is alive at a time), then its objective's `after_backward` hook
        runs (MAN's EMA update), and its detached output feeds the next piece. Returns {"logits": detached logits, "losses": [float per piece]}.
        """
        if x.shape[1:] != self.input_shape:
            raise InfoProError(f"inputs of shape {tuple(x.shape[1:])} given, the learner was built for {self.input_shape}")
        image = self.unnormalize(x) if any(obj.needs_image for obj in self.aux) else None
        h = x
        losses = []
        # (piece k-1 as a cascade runs it again, its input), held only for a loss that runs through piece k-1 (HPFF)
        previous = None
        for k, (piece, objective) in enumerate(zip(self.pieces, self.aux)):
            call = objective
            if objective.needs_cascade and k > 0:
                call = functools.partial(objective, cascade=(previous[0], piece, previous[1]))
            next_needs = k + 1 < self.K and self.aux[k + 1].needs_cascade
            previous = (piece, h) if next_needs else None
            if next_needs and k == 0:
                # The first block (the stem) runs once per step, as in HPFF's code (`y = torch.clone(x)`): piece 1's
                # cascade starts from a clone of its output, graph kept, so its BatchNorm statistics move once.
                with torch.autocast(h.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    h = piece[0](h)
                piece = piece[1:]
                previous = (piece, h.clone())
            h, loss = local_step(piece, call, h, y, image, self.amp_dtype)
            objective.after_backward()  # e.g. MAN's EMA moves here, before the optimiser step (as its authors')
            losses.append(loss)
            if self.piece_done is not None:
                self.piece_done(k)
        # One host sync per step, not one per piece.
        return {"logits": h, "losses": torch.stack(losses).tolist()}

    def compile_pieces(self, backend: str = "inductor", mode: str | None = None) -> None:
        """`torch.compile` each piece and each objective on its own, in place (same modules, same state
        dict keys). Each compiled graph spans one piece or one objective, so `train_step` still frees a
        piece's graph before the next piece runs and no gradient crosses a cut; the whole learner is
        never one graph (with `recompute`, each block of a piece is compiled on its own, between the
        checkpoints). Raises `InfoProError` where the compiler cannot run."""
        check_compiler(backend, self.mean.device)
        # A recomputed piece runs its checkpoints eagerly (the compiler cannot trace them): its blocks compile.
        pieces = [m for piece in self.pieces for m in (piece if isinstance(piece, RecomputedSequential) else [piece])]
        for module in (*pieces, *self.aux):
            module.compile(backend=backend, mode=mode)

    def after_optimizer_step(self) -> None:
        """Run the objectives' post-step hooks (e.g. MAN's EMA update); call it after every optimiser step."""
        for objective in self.aux:
            objective.after_optimizer_step()

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The image in [0, 1] that a normalised input came from (the decoder's target)."""
        return (x * self.std + self.mean).clamp_(0, 1)

    def export(self) -> SequentialBackbone:
        """A copy of the plain backbone with the trained weights and no auxiliary nets."""
        return copy.deepcopy(self._backbone)

    def piece_memory(self, batch_size: int) -> list[tuple[int, int]]:
        """Each piece's peak activation bytes saved for backward at `batch_size`, as (blocks, aux nets).

        From one profiling pass on copies (the model is untouched); it equals what
        `SavedActivationMeter` measures around `train_step` (the step's peak is the max).
        """
        context = dataclasses.replace(self._cut_context, batch_size=batch_size)
        backbone = self._backbone
        profile = profile_memory(backbone.blocks, backbone.head, self.K, context, cuts=self.cuts)
        return piece_memory(profile, self.cuts, [context.objective_kind(k) for k in range(self.K)],
                            context.recompute_segments, context.recompute_last)

    def describe(self) -> list[PieceInfo]:
        """One `PieceInfo` per piece: blocks, output shape, parameter counts, loss weights."""
        ranges = piece_ranges(self.cuts, len(self._backbone.blocks))
        return [
            PieceInfo(
                index=k,
                blocks=ranges[k],
                output_shape=self._output_shapes[k],
                piece_params=_count(self.pieces[k]),
                aux_params=_count(self.aux[k]),
                recon_weight=self.aux[k].recon_weight,
                task_weight=self.aux[k].task_weight,
            )
            for k in range(self.K)
        ]


def check_compiler(backend: str, device: torch.device) -> None:
    """Compile and run a one-line function with `backend` on `device`: an `InfoProError` that says why,
    rather than a compiler traceback at the first training step, where torch.compile cannot work."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        raise InfoProError(f"--compile: torch.compile does not support this Python ({sys.version.split()[0]}) "
                           f"or platform; run without --compile")
    try:
        torch._dynamo.reset()  # a fresh trial, not a cached one
        probe = torch.compile(lambda t: t * 2 + 1, backend=backend)
        probe(torch.ones(2, device=device))
    except Exception as error:  # any failure of the compiler stack means the same to the user
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise InfoProError(f"--compile: torch.compile (backend {backend!r}) cannot run on {device}: {reason}; "
                           f"run without --compile (inductor on the CPU needs a C++ compiler)") from None


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


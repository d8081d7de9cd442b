"""Point-to-point messages between ranks, each waited for with a timeout; a failure names the peer.

gloo reports a dead peer at once ("Connection closed by peer") and a silent one
when `work.wait(timeout)` runs out; either becomes a `PeerLost` that says which
rank was lost, which the CLI prints as one line before exiting non-zero.
"""

from __future__ import annotations

import io
import re
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..errors import InfoProError


class PeerLost(InfoProError):
    """Another rank died or stopped answering: this one cannot go on."""


def _reason(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)  # drop gloo's "[.../pair.cc:553] " source prefix
    return re.split(r"\.\s", text)[0].rstrip(".")  # its first sentence says what happened


class Link:
    """This rank's sends and receives. At most `max_in_flight` sends are outstanding: a sender may run
    that far ahead of its receiver and no further (gloo completes a send when the receiver takes it)."""

    def __init__(self, rank: int, device: torch.device, timeout: timedelta,
                 name: Callable[[int], str] = lambda r: f"rank {r}", max_in_flight: int = 2) -> None:
        self.rank = rank
        self.device = device
        self.timeout = timeout
        self.name = name
        self.max_in_flight = max_in_flight
        self._pending: deque[tuple[Any, torch.Tensor, int, str]] = deque()

    def _fail(self, peer: int | None, what: str, error: BaseException) -> PeerLost:
        who = self.name(peer) if peer is not None else "another rank"
        return PeerLost(f"rank {self.rank}: lost {who} while {what}: {_reason(error)} (a rank that dies closes its "
                        f"connections; one silent for --dist-timeout {self.timeout.total_seconds():g} s is given up); "
                        f"stopping")

    def wait(self, work: Any, peer: int | None, what: str) -> None:
        try:
            work.wait(timeout=self.timeout)
        except RuntimeError as error:
            raise self._fail(peer, what, error) from None

    def recv(self, shape: tuple[int, ...], dtype: torch.dtype, src: int, what: str) -> torch.Tensor:
        buffer = torch.empty(shape, dtype=dtype, device=self.device)
        try:
            work = dist.irecv(buffer, src)
        except RuntimeError as error:
            raise self._fail(src, what, error) from None
        self.wait(work, src, what)
        return buffer

    def isend(self, tensor: torch.Tensor, dst: int, what: str) -> None:
        """Start sending `tensor` (kept alive until sent); blocks only when too many sends are outstanding."""
        tensor = tensor.contiguous()
        try:
            work = dist.isend(tensor, dst)
        except RuntimeError as error:
            raise self._fail(dst, what, error) from None
        self._pending.append((work, tensor, dst, what))
        while len(self._pending) > self.max_in_flight:
            self._wait_oldest()

    def flush(self) -> None:
        """Wait until every send has been received."""
        while self._pending:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        work, _, dst, what = self._pending.popleft()
        self.wait(work, dst, what)

    def send_object(self, obj: Any, dst: int, what: str) -> None:
        """A picklable object of tensors and plain values (a state dict, a report): length, then bytes."""
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        payload = torch.frombuffer(bytearray(buffer.getbuffer()), dtype=torch.uint8).to(self.device)
        self.isend(torch.tensor([payload.numel()], dtype=torch.int64, device=self.device), dst, what)
        self.isend(payload, dst, what)
        self.flush()

    def recv_object(self, src: int, what: str) -> Any:
        size = int(self.recv((1,), torch.int64, src, what).item())
        payload = self.recv((size,), torch.uint8, src, what).cpu()
        return torch.load(io.BytesIO(payload.numpy().tobytes()), weights_only=True)

    def barrier(self, what: str) -> None:
        """Every rank reaches this point; gloo's monitored barrier names a rank that does not."""
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=self.timeout, wait_all_ranks=True)
            else:
                dist.barrier(async_op=True).wait(timeout=self.timeout)
        except RuntimeError as error:
            raise self._fail(None, what, error) from None

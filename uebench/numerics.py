"""The numerics a cell computes with: what, besides its settings, decides its floats.

On a CPU the same cell gives other numbers on another thread count (the reductions inside a
convolution or a matmul are split between threads, so they add in another order) and on another
torch release (other kernels).  The difference is not noise to average over: a sample-wise
noise crafted on 2 threads and one crafted on 1 thread are two different poisons, and a victim
trained on them ended 18 points apart (issue 16).  So a cell's numerics are part of its
identity (``uebench.cellkey``) and of its noise's cache key, and on a CPU every protocol *pins*
the thread count (``Protocol.cpu_threads``, 1 for the built-in ones) instead of taking whatever
the machine offers: a row then reproduces bit for bit on any machine with the same torch, and
``uebench sweep --jobs N`` fills the cores with N one-thread cells.

On a GPU the host's thread count does not enter the arithmetic (the tensors live on the device),
so it is neither pinned nor part of the key; GPU kernels are not bit-reproducible anyway
(cuDNN's algorithm choice, atomics), and the device type and precision stay in the key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


def torch_release(version: str | None = None) -> str:
    """``2.14.1`` for ``2.14.1+cu130``: the build tag names the CUDA a wheel was built against,
    not other CPU arithmetic."""
    return (version or torch.__version__).split("+", 1)[0]


@dataclass(frozen=True)
class Numerics:
    """A cell's numerics, known before any work (``runner.prepare``)."""

    torch_version: str
    device_type: str  # cpu, cuda, mps, ...
    threads: int | None  # CPU intra-op threads; None on an accelerator
    precision: str  # fp32, bf16, fp16 (resolved, never auto)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """``torch 2.14.1, cpu, 1 thread, fp32``: how a summary names them."""
        where = (self.device_type if self.threads is None
                 else f"{self.device_type}, {self.threads} thread{'s' * (self.threads != 1)}")
        return f"torch {self.torch_version}, {where}, {self.precision}"

    def apply(self) -> None:
        """Make this process compute with these numerics: pin the CPU thread count."""
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)


def numerics_for(device: torch.device, precision: str, threads: int | None) -> Numerics:
    """The numerics of a cell on ``device`` in ``precision`` (resolved) with ``threads`` CPU
    threads (the protocol's or the user's; ignored off the CPU)."""
    on_cpu = device.type == "cpu"
    return Numerics(torch_release(), device.type, int(threads) if on_cpu else None, precision)


def threads_of_device_label(label: str) -> int | None:
    """``cpu:2threads`` (a row's ``device`` column) → 2; None for an accelerator's label."""
    text = str(label or "")
    if text.startswith("cpu:") and text.endswith("threads"):
        return int(text[len("cpu:"):-len("threads")])
    return None

"""Where and how tensors are computed: device choice, memory layout, autocast precision."""

from __future__ import annotations

import contextlib
import copy

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def pick_device(name: str | None = None) -> torch.device:
    """``auto`` → the GPU where there is one, else the CPU; anything else must exist here
    (``OptionError`` naming what does: ``cuda`` without CUDA, ``cuda:7`` on a one-GPU machine)."""
    from uebench.options import OptionError

    if not name or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise OptionError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise OptionError(f"device {name!r}: no CUDA GPU is available here (torch {torch.__version__}); "
                              "use --device cpu or auto")
        if device.index is not None and device.index >= count:
            raise OptionError(f"device {name!r}: this machine has {count} GPU(s), cuda:0..cuda:{count - 1}")
    elif device.type not in ("cpu", "mps", "xpu"):
        raise OptionError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX-512 BF16 / AMX); elsewhere bf16 is *slower*."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 on a GPU or a CPU with native bf16, fp32 otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        from uebench.options import OptionError

        raise OptionError(f"precision bf16: {device_label(device)} has no bf16 support (needs compute capability >= 8.0); "
                          f"use --precision fp16, fp32 or auto")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """A context running matmuls/convs in ``precision`` (no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def prepare_model(model: torch.nn.Module, device: torch.device, channels_last: bool = True) -> torch.nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def frozen_copy(model: torch.nn.Module, channels_last: bool = True) -> torch.nn.Module:
    """An eval-mode, gradient-free copy of ``model`` with each BatchNorm folded into the
    convolution before it, for passes that differentiate w.r.t. the *input* only (PGD).

    In eval mode a BatchNorm is a per-channel affine map, so folding it changes nothing but
    float rounding, and it saves a memory-bound elementwise pass forward and backward per layer:
    PGD steps run 1.1-1.4× faster on 2 CPU cores (ToyModel, cnn-small; benchmarks/).  Models
    torch.fx cannot trace (data-dependent control flow) are copied unfolded.
    """
    from torch.fx.experimental.optimization import fuse

    was_training = model.training
    model.eval()
    try:
        frozen = fuse(model, inplace=False)
    except Exception:  # tracing failures come as TraceError, TypeError, AttributeError, …
        frozen = copy.deepcopy(model)
    finally:
        model.train(was_training)
    frozen.eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen.to(memory_format=torch.channels_last) if channels_last else frozen


# ``--compile``: torch.compile modes for the victim's forward and backward ("none": eager)
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_mode(mode: str) -> None:
    """Bad input (``OptionError``, a ValueError) unless ``mode`` is one of ``COMPILE_MODES``."""
    if mode not in COMPILE_MODES:
        from uebench.options import OptionError

        raise OptionError(f"compile mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")


def compile_model(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """``model`` compiled in place (``nn.Module.compile``: parameters, buffers and state_dict keys
    stay the model's own, so a defense that saves and restores weights is unaffected).
    ``reduce-overhead`` replays the step's kernels as CUDA graphs on a GPU — the launch cost
    that dominates at the protocol's batch 128.  The first batches of each shape (and of eval
    mode) pay the compilation: tens of seconds."""
    check_compile_mode(mode)
    if mode != "none":
        model.compile(mode=None if mode == "default" else mode)
    return model


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{torch.get_num_threads()}threads"

"""What the benchmark scripts share: the data they time, the timers, the table and the log, the
command-line flags every script takes, and the device cell (settings and Trainer bench) that
``bench_cell.py`` times and ``bench_concurrent.py`` runs K of at once.

Not a script: each ``bench_*.py`` beside it answers one question (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from uebench.compute import COMPILE_MODES, autocast, pick_device, prepare_model
from uebench.datasets.cifar10 import Cifar10
from uebench.defenses.standard import NoDefense
from uebench.options import OptionError
from uebench.plugins import get_host
from uebench.protocols import PROTOCOLS
from uebench.train import TrainData, Trainer

EPS = 8 / 255


# --------------------------------------------------------------------------------------------
# data


def default_data_dir() -> str | None:
    """$UEBENCH_DATA, else a ``shared/data`` holding cifar10/ next to or above the repository."""
    if os.environ.get("UEBENCH_DATA"):
        return os.environ["UEBENCH_DATA"]
    here = Path(__file__).resolve().parent.parent
    for cand in (here / "shared" / "data", here.parent / "shared" / "data"):
        if (cand / "cifar10").is_dir():
            return str(cand)
    return None


def load_images(data_dir: str | None, n: int, synthetic: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The first ``n`` CIFAR-10 training images as uint8 NCHW, their labels, and where they came
    from; random uint8 images when CIFAR-10 is not found (never downloads) or ``synthetic``."""
    if not synthetic:
        try:
            data = Cifar10().load(data_dir, download=False)
            return data.x_train[:n].contiguous(), data.y_train[:n].contiguous(), f"CIFAR-10 train[:{n}]"
        except Exception as exc:  # no data here: fall back so the benchmark still runs
            warnings.warn(f"CIFAR-10 not found ({type(exc).__name__}); using random uint8 images", stacklevel=2)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return x, torch.randint(0, 10, (n,), generator=g), "random uint8 images (synthetic)"


class HWCImages(torch.utils.data.Dataset):
    """A torchvision.datasets-style dataset: uint8 HWC arrays, PIL images through a transform."""

    def __init__(self, x_hwc, y, transform):
        self.x, self.y, self.transform = x_hwc, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


# --------------------------------------------------------------------------------------------
# timing


def median(xs):
    return statistics.median(xs) if xs else math.nan


def timed_steps(step, seconds: float, min_steps: int = 3) -> list[float]:
    """Call ``step`` repeatedly for about ``seconds`` (at least ``min_steps`` times); per-call times."""
    times, start = [], time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer read after it measures work done, not work queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Seconds ``fn()`` takes, including the device work it queued."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# reporting


@dataclasses.dataclass
class Row:
    measurement: str
    value: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""
    note: str = ""


def target_row(measurement: str, value: str, ratio: float, target: float, note: str = "", judge: bool = True) -> Row:
    """A ratio with its ``≥ target`` and PASS/MISS (none when ``judge`` is false: not comparable)."""
    verdict = ("PASS" if ratio >= target else "MISS") if judge else ""
    return Row(measurement, value, f"{ratio:.2f}×", f"≥ {target:g}×", verdict, note)


def print_table(title: str, rows: list[Row]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(f"\n{title}")
        w = max(len(r.measurement) for r in rows)
        for r in rows:
            print(f"  {r.measurement:<{w}}  {r.value:>20}  {r.ratio:>7}  {r.target:>7}  {r.verdict:<4}  {r.note}")
        return
    table = Table(title=title, title_justify="left")
    for col, just in (("measurement", "left"), ("value", "right"), ("ratio", "right"), ("target", "right"), ("", "left"),
                      ("note", "left")):
        table.add_column(col, justify=just)
    for r in rows:
        style = {"PASS": "green", "MISS": "red"}.get(r.verdict)
        table.add_row(r.measurement, r.value, r.ratio, r.target, f"[{style}]{r.verdict}[/]" if style else r.verdict, r.note)
    Console(width=max(170, int(os.environ.get("COLUMNS") or 0))).print(table)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def device_name(device: torch.device) -> str:
    """The GPU's name, else the CPU model (platform.processor() is empty on most Linux systems)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def finish(results: dict, started: float, load_before: float, gpu: bool = False, json_path: Path | None = None) -> None:
    """The closing lines every script prints (data, threads, time, load average), and the JSON file."""
    load_after = os.getloadavg()[0]
    results.update(seconds=time.perf_counter() - started, loadavg=[load_before, load_after])
    threads, busy = torch.get_num_threads(), ""
    if not gpu and max(load_before, load_after) > threads + 0.5:
        busy = " — other processes were computing: trust the ratios, not the absolute numbers"
        if threads > 1:
            busy += " (on shared cores --threads 1 is often faster and steadier)"
    print(f"\n{results.get('data', '')}; torch {torch.__version__}, {threads} threads; {results['seconds']:.0f} s; "
          f"load average {load_before:.2f} → {load_after:.2f}{busy}.")
    print("Targets are information: met or missed, the exit status is 0 (1 only if a section FAILED).")
    if json_path:
        json_path.write_text(json.dumps(results, indent=2, default=str))


def section(results: dict, key: str, fn, *args) -> None:
    """Run one section; a crash (out of memory, a broken component) is recorded and the others still run."""
    try:
        results[key] = fn(*args)
    except Exception as exc:
        traceback.print_exc()
        results.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------
# the flags every script takes


def parser(doc: str, quick_help: str, threads_help: str = "torch intra-op CPU threads (default: torch's choice)"):
    """The flags of every script: --quick, --data-dir, --synthetic, --threads, --json."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--data-dir", default=default_data_dir(),
                    help="uebench data root holding cifar10/ (default: $UEBENCH_DATA, else shared/data)")
    ap.add_argument("--synthetic", action="store_true", help="random uint8 images instead of CIFAR-10")
    ap.add_argument("--threads", type=int, help=threads_help)
    ap.add_argument("--json", type=Path, help="also write every number to this JSON file")
    return ap


def add_device_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    ap.add_argument("--victim", help="victim/source model name (default: resnet18 on cuda, cnn-small on cpu)")
    ap.add_argument("--train-images", type=int, help="images per training epoch (default: 50,000 cuda / 10,000 cpu)")
    ap.add_argument("--compile", default="none", choices=COMPILE_MODES,
                    help="time the Trainer under uebench's --compile MODE; reduce-overhead = CUDA graphs")


def parse_device_args(ap: argparse.ArgumentParser, argv) -> argparse.Namespace:
    args = ap.parse_args(argv)
    try:
        args.device = pick_device(args.device)
    except OptionError as exc:
        ap.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


# --------------------------------------------------------------------------------------------
# the device cell: bench_cell.py times it, bench_concurrent.py runs K at once


@dataclasses.dataclass
class DeviceSettings:
    device: torch.device
    protocol: str  # paper on a GPU, cpu on a CPU: batch 128 and --precision auto as uebench run uses them
    precision: str
    victim: str
    train_images: int
    data_dir: str | None
    synthetic: bool
    craft_images: int = 0
    craft_steps: int = 20  # T of the timed pass (the paper's 20; fewer with --quick, the ratio is per step)
    rounds: int = 1  # interleaved repetitions; results are medians
    min_seconds: float = 2.0  # shortest raw-loop probe
    seed: int = 0
    compile: str = "none"  # uebench's --compile for the Trainer (bench_cell then times eager beside it)

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"

    def as_json(self) -> dict:
        return {k: str(v) if k == "device" else v for k, v in dataclasses.asdict(self).items()}


def device_settings(args, **fields) -> DeviceSettings:
    """The protocol uebench run uses on ``args.device`` (paper on a GPU, cpu on a CPU) and its victim."""
    gpu = args.device.type == "cuda"
    protocol = "paper" if gpu else "cpu"
    return DeviceSettings(
        device=args.device, protocol=protocol, precision=PROTOCOLS[protocol].resolve_precision("auto", args.device),
        victim=args.victim or ("resnet18" if gpu else "cnn-small"), data_dir=args.data_dir, synthetic=args.synthetic,
        compile=args.compile, **fields,
    )


def pick(args, value, quick, gpu_full, cpu_full):
    """A flag's value, else its --quick default, else the full default of the device."""
    return value if value is not None else quick if args.quick else gpu_full if args.device.type == "cuda" else cpu_full


def build_victim(name: str, device: torch.device) -> torch.nn.Module:
    """The victim through the registry, the way uebench.runner's ``_build_model_factory`` builds it."""
    entry, arg = get_host().victims.resolve(name)
    return prepare_model(entry.cls(None, arg).build(10, (3, 32, 32)), device)


def load_data(s: DeviceSettings, n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` uint8 CIFAR-10 training images (random ones if absent) and labels, on the device."""
    x, y, source = load_images(s.data_dir, n, s.synthetic)
    return x.to(s.device), y.to(s.device), source


class TrainBench:
    """Trainer and bare loop on the same data, every model starting from the same weights."""

    def __init__(self, s: DeviceSettings, x: torch.Tensor, y: torch.Tensor):
        self.s, self.x, self.y = s, x, y
        torch.manual_seed(s.seed)
        self.init = {k: v.detach().clone() for k, v in build_victim(s.victim, s.device).state_dict().items()}
        self.settings = dataclasses.replace(PROTOCOLS[s.protocol].train_settings(s.precision, device=s.device), epochs=1,
                                            compile=s.compile)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(s.seed)).to(s.device)
        # what the bare loop reads: float [0, 1], shuffled once, channels_last, already on the device
        self.premade = (x[order].float() / 255).contiguous(memory_format=torch.channels_last)
        self.premade_y = y[order]
        self.models: dict[str, torch.nn.Module] = {}

    def model(self, eager: bool = True) -> torch.nn.Module:
        """The model of this variant, reset to the shared initial weights.  One object per variant
        for the whole benchmark: a compiled model keeps its compiled graphs, so the timed epochs
        measure steady-state throughput, and the warm-up alone pays the compilation."""
        key = "eager" if eager else "trainer"
        if key not in self.models:
            self.models[key] = build_victim(self.s.victim, self.s.device)
        m = self.models[key]
        m.load_state_dict(self.init)
        return m.train()

    def trainer_rate(self, n: int | None = None, eager: bool = False) -> float:
        """img/s of one ``Trainer.fit`` epoch on the first ``n`` images, as ``run_cell`` builds it
        (compiled with ``--compile`` unless ``eager``); the test set is empty, so per-epoch
        evaluation is not timed."""
        n = len(self.y) if n is None else n
        s = self.s
        settings = dataclasses.replace(self.settings, compile="none") if eager else self.settings
        generators = torch.Generator().manual_seed(s.seed), torch.Generator().manual_seed(s.seed + 1)
        trainer = Trainer(self.model(eager or settings.compile == "none"), TrainData(self.x[:n], self.y[:n], 10), settings,
                          [NoDefense()], *generators, s.device)
        return n / timed(lambda: trainer.fit(self.x[:0], self.y[:0]), s.device)

    def bare_rate(self, batch: int, warmup: int = 3) -> float:
        """img/s of a bare epoch: slices of pre-made tensors, the same optimizer and autocast, nothing else."""
        s, model = self.s, self.model()
        opt = torch.optim.SGD(model.parameters(), lr=self.settings.lr, momentum=0.9, weight_decay=5e-4)
        x, y, n = self.premade, self.premade_y, len(self.premade_y)

        def step(a: int) -> None:
            with autocast(s.device, s.precision):
                loss = F.cross_entropy(model(x[a : a + batch]).float(), y[a : a + batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        # kernel selection and allocator growth are not throughput; the ragged last batch is a shape too
        for a in [0] * warmup + ([n - n % batch] if n % batch else []):
            step(a)

        def epoch() -> None:
            for a in range(0, n, batch):
                step(a)

        return n / timed(epoch, s.device)

    def warmup(self) -> None:
        """A short fit first: its batch shapes (full and the epoch's ragged last one) get their
        kernels (and, with --compile, their compiled graphs)."""
        b, n = self.settings.batch_size, len(self.y)
        self.trainer_rate(min(n, 2 * b + (n % b or 8)))
        if self.settings.compile != "none":
            self.trainer_rate(min(n, 2 * b + (n % b or 8)), eager=True)

"""Device throughput benchmark: uebench's Trainer, crafting pass and concurrent cells, each as a
ratio to a bare loop run side by side in the same process (or the same minute).

Absolute numbers on shared machines drift 2× from minute to minute; a ratio between loops timed
next to each other drifts much less.  Written to run unchanged on a CPU and on a CUDA GPU.

1. training — ``uebench.train.Trainer.fit`` (1 epoch, NoDefense, batch 128, the protocol's
   precision, channels_last) ÷ a bare loop: same victim, SGD(0.9, wd 5e-4), autocast, on
   pre-made float tensors in consecutive slices.  The bare loop at batch 512 is shown too.
2. crafting — ``MinMinCrafter.perturbation_pass()`` (sample-wise) in image·steps/s ÷ a raw loop of
   forward + cross-entropy + gradient w.r.t. the input only, batch 512, BN folded as the pass does.
3. concurrent cells — K worker processes train section 1's epoch on the same device at once
   (start barrier); total img/s across them, as a ratio to K = 1.

Usage: ``python benchmarks/bench_device.py [--device cpu|cuda|cuda:N] [--compile reduce-overhead] [--quick] [--json out.json]``.
Exits 0 whether targets are met or not (they are information, see benchmarks/README.md); 1 only
when a section crashed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_crafting import Row, default_data_dir, load_images, log, median, print_table

from uebench.attacks.base import CraftContext
from uebench.attacks.errmin_pgd import ErrMinPGD, MinMinCrafter
from uebench.compute import COMPILE_MODES, autocast, frozen_copy, pick_device, prepare_model
from uebench.defenses.standard import NoDefense
from uebench.options import OptionError
from uebench.plugins import get_host
from uebench.protocols import PROTOCOLS
from uebench.train import TrainData, Trainer

EPS = 8 / 255
CRAFT_BATCH = 512  # the paper's crafting batch
TRAIN_BARE_TARGET = 0.90  # Trainer ÷ bare loop
RECORDED_GPU = {"img_per_s": 11_200.0, "epoch_s": 4.2}  # one paper cell (ResNet-18, bf16) before the speed-up work
CELL_SPEEDUP_TARGET = 2.5  # one paper cell trains ≥ 2.5× faster than the recorded baseline
GPU_TOTAL_TARGET = 30_000.0  # img/s per GPU, summed over several concurrent cells


@dataclasses.dataclass
class Settings:
    device: torch.device
    protocol: str  # paper on a GPU, cpu on a CPU: batch 128 and --precision auto as uebench run uses them
    precision: str
    victim: str
    train_images: int
    craft_images: int
    craft_steps: int  # T of the timed pass (the paper's 20; fewer with --quick, the ratio is per step)
    rounds: int  # interleaved repetitions; results are medians
    min_seconds: float  # shortest raw-loop probe
    data_dir: str | None
    synthetic: bool
    seed: int = 0
    compile: str = "none"  # uebench's --compile for the Trainer (section 1 then times eager beside it)


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


def build_victim(name: str, device: torch.device) -> torch.nn.Module:
    """The victim through the registry, the way uebench.runner's ``_build_model_factory`` builds it."""
    entry, arg = get_host().victims.resolve(name)
    return prepare_model(entry.cls(None, arg).build(10, (3, 32, 32)), device)


def load_data(s: Settings, n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` uint8 CIFAR-10 training images (random ones if absent) and labels, on the device."""
    x, y, source = load_images(s.data_dir, n, s.synthetic)
    return x.to(s.device), y.to(s.device), source


# --------------------------------------------------------------------------------------------
# 1. training


class TrainBench:
    """Trainer and bare loop on the same data, every model starting from the same weights."""

    def __init__(self, s: Settings, x: torch.Tensor, y: torch.Tensor):
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
        trainer = Trainer(self.model(eager or settings.compile == "none"), TrainData(self.x[:n], self.y[:n], 10), settings, [NoDefense()],
                          torch.Generator().manual_seed(s.seed), torch.Generator().manual_seed(s.seed + 1), s.device)
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


def bench_training(s: Settings, x: torch.Tensor, y: torch.Tensor) -> dict:
    tb = TrainBench(s, x, y)
    log(f"training: warm-up, then {s.rounds} round(s) of Trainer / bare 128 / bare 512 on {len(y)} images")
    tb.warmup()
    rates: dict[str, list[float]] = {"trainer": [], "bare_128": [], "bare_512": []}
    if s.compile != "none":
        rates["trainer_eager"] = []
    for _ in range(s.rounds):  # interleaved, so drift hits every variant alike
        rates["trainer"].append(tb.trainer_rate())
        if s.compile != "none":
            rates["trainer_eager"].append(tb.trainer_rate(eager=True))
        rates["bare_128"].append(tb.bare_rate(tb.settings.batch_size))
        rates["bare_512"].append(tb.bare_rate(512))
    med = {k: median(v) for k, v in rates.items()}
    return {"img_per_s": rates, "median": med, "trainer_over_bare": med["trainer"] / med["bare_128"],
            "batch": tb.settings.batch_size, "images": len(y), "compile": s.compile}


# --------------------------------------------------------------------------------------------
# 2. crafting


class CraftBench:
    """uebench's sample-wise perturbation pass and a raw fwd+bwd-to-input loop on one source model."""

    def __init__(self, s: Settings, x: torch.Tensor, y: torch.Tensor):
        self.s, self.x, self.y = s, x, y
        torch.manual_seed(s.seed)
        self.model = build_victim(s.victim, s.device)
        # the pass runs on frozen_copy (eval, BN folded); the raw loop gets the same, so the ratio
        # measures the pass's own overhead, not the folding
        self.raw_model = frozen_copy(self.model, channels_last=True)
        b = min(CRAFT_BATCH, len(y))
        self.raw_x = (x[:b].float() / 255).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        self.raw_y = y[:b]
        self.options = ErrMinPGD.Options(form="sample", steps=s.craft_steps, step_size=EPS / 10, stop_error=0.01, model_steps=1,
                                         source=s.victim, source_lr=0.1, batch_size=CRAFT_BATCH, max_iters=1)

    def raw_step(self) -> None:
        with autocast(self.s.device, self.s.precision):
            logits = self.raw_model(self.raw_x)
        torch.autograd.grad(F.cross_entropy(logits.float(), self.raw_y), self.raw_x)

    def raw_rate(self) -> float:
        """image·steps/s of the raw loop, for at least T steps and ``min_seconds``."""
        s, steps, chunk = self.s, 0, max(3, self.s.craft_steps)
        sync(s.device)
        t0 = time.perf_counter()
        while True:
            for _ in range(chunk):
                self.raw_step()
            steps += chunk
            sync(s.device)
            elapsed = time.perf_counter() - t0
            if elapsed >= s.min_seconds:
                return len(self.raw_y) * steps / elapsed

    def crafter(self, n: int, **overrides) -> MinMinCrafter:
        s = self.s
        ctx = CraftContext(x=self.x[:n], y=self.y[:n], num_classes=10, eps=EPS, seed=s.seed, device=s.device,
                           precision=s.precision, channels_last=True, protocol=PROTOCOLS[s.protocol],
                           build_model=lambda name: self.model, generator=torch.Generator().manual_seed(s.seed))
        return MinMinCrafter(ErrMinPGD.Options(**{**self.options.__dict__, **overrides}), ctx)

    def pass_rate(self) -> float:
        """image·steps/s of one perturbation pass over all images (its per-batch error count included)."""
        c = self.crafter(len(self.y))
        return len(self.y) * self.s.craft_steps / timed(c.perturbation_pass, self.s.device)

    def warmup(self) -> None:
        n = len(self.y)
        self.crafter(min(n, CRAFT_BATCH + n % CRAFT_BATCH), steps=1).perturbation_pass()  # full and ragged batch shapes
        for _ in range(2):
            self.raw_step()


def bench_crafting(s: Settings, x: torch.Tensor, y: torch.Tensor) -> dict:
    cb = CraftBench(s, x, y)
    log(f"crafting: warm-up, then {s.rounds} round(s) of raw / pass (T={s.craft_steps}, {len(y)} images) / raw")
    cb.warmup()
    passes, raws, ratios = [], [], []
    for _ in range(s.rounds):  # each pass is bracketed by raw probes; its ratio is to their mean
        before = cb.raw_rate()
        passes.append(cb.pass_rate())
        after = cb.raw_rate()
        raws += [before, after]
        ratios.append(passes[-1] / ((before + after) / 2))
    return {"pass_img_steps_per_s": passes, "raw_img_steps_per_s": raws, "pass_over_raw_paired": ratios,
            "pass_over_raw": median(ratios), "steps": s.craft_steps, "images": len(y), "raw_batch": len(cb.raw_y)}


# --------------------------------------------------------------------------------------------
# 3. concurrent cells


def worker(s: Settings) -> int:
    """One cell of section 3: warm up, say ``ready``, wait for ``go`` on stdin, time one epoch,
    print it as JSON.  The barrier keeps start-up (imports, CUDA context, data) out of the overlap."""
    x, y, _ = load_data(s, s.train_images)
    tb = TrainBench(s, x, y)
    tb.warmup()
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.time()
    rate = tb.trainer_rate()
    print(json.dumps({"img_per_s": rate, "start": start, "end": time.time(), "images": len(y)}), flush=True)
    return 0


def run_concurrent(s: Settings, k: int, threads: int) -> dict:
    """K workers at once; total img/s = all images ÷ (last end − first start), the wall-clock
    throughput of the device, so a straggler is not hidden by summing per-worker rates."""
    args = [sys.executable, str(Path(__file__).resolve()), "--_worker", "--device", str(s.device), "--victim", s.victim,
            "--train-images", str(s.train_images), "--threads", str(threads), "--compile", s.compile]
    if s.synthetic:
        args.append("--synthetic")
    if s.data_dir:
        args += ["--data-dir", s.data_dir]
    with tempfile.TemporaryDirectory() as tmp:
        errs = [open(Path(tmp) / f"worker{i}.err", "w+") for i in range(k)]  # closed below
        procs = [subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=e, text=True) for e in errs]
        try:
            ready = [any(line.strip() == "ready" for line in p.stdout) for p in procs]  # False: it exited first
            if all(ready):
                for p in procs:
                    p.stdin.write("go\n")
                    p.stdin.flush()
            outs = [p.communicate(timeout=1800)[0] for p in procs]
            failed = [i for i, p in enumerate(procs) if p.returncode != 0 or not ready[i]]
            if failed:  # its stderr in full to the log, its last line (the exception) to the table
                errs[failed[0]].seek(0)
                text = errs[failed[0]].read().strip()
                log(f"concurrent: worker {failed[0]} of {k} failed:\n{text[-3000:]}")
                last = text.splitlines()[-1] if text else "no output"
                return {"k": k, "error": f"K={k}, worker {failed[0]} exited {procs[failed[0]].returncode}: {last}"}
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            for e in errs:
                e.close()
    runs = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    return {"k": k, "threads_per_worker": threads, "workers": runs, "total_img_per_s": sum(r["images"] for r in runs) / wall,
            "sum_of_rates": sum(r["img_per_s"] for r in runs)}


def bench_concurrent(s: Settings, ks: list[int], threads: int | None) -> dict:
    out = {}
    for k in ks:
        per = threads or max(1, (os.cpu_count() or 1) // k)  # unset: the cores shared out, not oversubscribed
        log(f"concurrent: {k} worker(s) × {s.train_images} images, {per} thread(s) each")
        out[k] = run_concurrent(s, k, per)
    base = out.get(1, {}).get("total_img_per_s")
    for r in out.values():
        if base and "total_img_per_s" in r:
            r["over_k1"] = r["total_img_per_s"] / base
    return out


# --------------------------------------------------------------------------------------------
# report


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


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def rows_of(s: Settings, results: dict) -> list[Row]:
    """The table: each section's baseline (= base), then uebench's rate as a ratio of it."""
    rows, gpu = [], s.device.type == "cuda"
    rows += [Row(f"{section}: FAILED", note=error[:150]) for section, error in results.get("errors", {}).items()]
    if "training" in results:
        t = results["training"]
        m, b = t["median"], t["median"]["bare_128"]
        rows.append(Row(f"bare loop, batch {t['batch']}", f"{b:,.0f} img/s", "= base", note="pre-made float tensors, consecutive slices"))
        compiled = t.get("compile", "none") != "none"
        if compiled:
            rows.append(Row(f"uebench Trainer, batch {t['batch']}, eager", f"{m['trainer_eager']:,.0f} img/s",
                            f"{m['trainer_eager'] / b:.2f}×", note="without --compile, for the ratio below"))
        rows.append(Row(f"uebench Trainer, batch {t['batch']}" + (f", --compile {t['compile']}" if compiled else ""),
                        f"{m['trainer']:,.0f} img/s", f"{t['trainer_over_bare']:.2f}×", f"≥ {TRAIN_BARE_TARGET:g}×",
                        verdict(t["trainer_over_bare"] >= TRAIN_BARE_TARGET),
                        "1 epoch, NoDefense, no evaluation" + (f"; {m['trainer'] / m['trainer_eager']:.2f}× eager" if compiled else "")))
        rows.append(Row("bare loop, batch 512", f"{m['bare_512']:,.0f} img/s", f"{m['bare_512'] / b:.2f}×", note="information"))
        if gpu:  # the baseline: one paper cell before the speed-up work (ResNet-18, bf16)
            same = s.victim == "resnet18" and s.precision == "bf16"
            epoch, rec = 50_000 / m["trainer"], RECORDED_GPU
            for what, value, speed in ((f"Trainer vs recorded {rec['img_per_s']:,.0f} img/s", f"{m['trainer']:,.0f} img/s",
                                        m["trainer"] / rec["img_per_s"]),
                                       (f"Trainer epoch at 50,000 images vs recorded {rec['epoch_s']:g} s", f"{epoch:.2f} s",
                                        rec["epoch_s"] / epoch)):
                rows.append(Row(what, value, f"{speed:.2f}×", f"≥ {CELL_SPEEDUP_TARGET:g}×", verdict(speed >= CELL_SPEEDUP_TARGET) if same else "",
                                "" if same else "the recorded cell is resnet18 bf16: not comparable"))
    if "crafting" in results:
        c = results["crafting"]
        rows.append(Row(f"raw fwd+CE+grad-to-input, batch {c['raw_batch']}", f"{median(c['raw_img_steps_per_s']):,.0f} img·step/s",
                        "= base", note="BN folded (frozen_copy), as the pass runs"))
        rows.append(Row(f"perturbation_pass, T={c['steps']}", f"{median(c['pass_img_steps_per_s']):,.0f} img·step/s",
                        f"{c['pass_over_raw']:.2f}×", note="paired with adjacent raw probes; includes the error count"))
    for k, r in results.get("concurrent", {}).items():
        if "error" in r:
            continue  # shown by the FAILED row
        target = f"≥ {GPU_TOTAL_TARGET:,.0f} img/s" if gpu and k > 1 else ""
        each = ", ".join(f"{w['img_per_s']:,.0f}" for w in r["workers"])
        rows.append(Row(f"{k} concurrent cell(s), total", f"{r['total_img_per_s']:,.0f} img/s",
                        f"{r['over_k1']:.2f}×" if "over_k1" in r else "", target,
                        verdict(r["total_img_per_s"] >= GPU_TOTAL_TARGET) if target else "", f"per worker: {each} img/s"))
    return rows


def parse(argv) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: 1,024 training and crafting images, T=5, 1 round")
    ap.add_argument("--victim", help="victim/source model name (default: resnet18 on cuda, cnn-small on cpu)")
    ap.add_argument("--train-images", type=int, help="images per training epoch (default: 50,000 cuda / 10,000 cpu)")
    ap.add_argument("--craft-images", type=int, help="images in the timed perturbation pass (default: 10,240 cuda / 2,048 cpu)")
    ap.add_argument("--craft-steps", type=int, help="T, PGD steps of the timed pass (default 20, --quick 5)")
    ap.add_argument("--rounds", type=int, help="interleaved repetitions of sections 1-2, medians reported (default 2, --quick 1)")
    ap.add_argument("--concurrent", help="comma-separated worker counts for section 3, '' to skip "
                                          "(default: 1,2,4 cuda; 1,2 cpu; skipped with --quick on cpu)")
    ap.add_argument("--skip-training", action="store_true", help="skip section 1")
    ap.add_argument("--skip-crafting", action="store_true", help="skip section 2")
    ap.add_argument("--data-dir", default=default_data_dir(), help="uebench data root holding cifar10/ (default: $UEBENCH_DATA)")
    ap.add_argument("--synthetic", action="store_true", help="random uint8 images instead of CIFAR-10")
    ap.add_argument("--threads", type=int, help="torch intra-op CPU threads (default: torch's; workers share the cores out)")
    ap.add_argument("--compile", default="none", choices=COMPILE_MODES,
                    help="time the Trainer under uebench's --compile MODE (and eager beside it); reduce-overhead = CUDA graphs")
    ap.add_argument("--json", type=Path, help="also write every number to this JSON file")
    ap.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        args.device = pick_device(args.device)
    except OptionError as exc:
        ap.error(str(exc))
    return args


def settings_of(args) -> Settings:
    gpu = args.device.type == "cuda"
    protocol = "paper" if gpu else "cpu"

    def pick(value, quick, gpu_full, cpu_full):
        return value if value is not None else quick if args.quick else gpu_full if gpu else cpu_full

    return Settings(
        device=args.device, protocol=protocol, precision=PROTOCOLS[protocol].resolve_precision("auto", args.device),
        victim=args.victim or ("resnet18" if gpu else "cnn-small"),
        train_images=pick(args.train_images, 1024, 50_000, 10_000), craft_images=pick(args.craft_images, 1024, 10_240, 2048),
        craft_steps=pick(args.craft_steps, 5, 20, 20), rounds=pick(args.rounds, 1, 2, 2),
        min_seconds=0.5 if args.quick else 2.0, data_dir=args.data_dir, synthetic=args.synthetic, compile=args.compile,
    )


def section(results: dict, key: str, fn, *args) -> None:
    """Run one section; a crash (out of memory, a broken component) is recorded and the others still run."""
    try:
        results[key] = fn(*args)
    except Exception as exc:
        traceback.print_exc()
        results.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"


def main(argv=None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    s = settings_of(args)
    if args._worker:
        return worker(s)
    gpu = s.device.type == "cuda"
    ks = args.concurrent if args.concurrent is not None else "" if args.quick and not gpu else "1,2,4" if gpu else "1,2"
    ks = [int(k) for k in ks.split(",") if k.strip()]
    started, load_before = time.perf_counter(), os.getloadavg()
    name = device_name(s.device)
    log(f"{s.device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, protocol {s.protocol}, "
        f"{s.precision}, victim {s.victim}, load average {load_before[0]:.1f}")
    results: dict = {"device": str(s.device), "device_name": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "settings": {k: str(v) if k == "device" else v for k, v in dataclasses.asdict(s).items()}}
    x, y, results["data"] = load_data(s, max(s.train_images, s.craft_images))
    if not args.skip_training:
        section(results, "training", bench_training, s, x[: s.train_images], y[: s.train_images])
    if not args.skip_crafting:
        section(results, "crafting", bench_crafting, s, x[: s.craft_images], y[: s.craft_images])
    if ks:
        if gpu:  # what sections 1-2 cached is of no use to the workers
            torch.cuda.empty_cache()
        section(results, "concurrent", bench_concurrent, s, ks, args.threads)
        failed = [r["error"] for r in results.get("concurrent", {}).values() if "error" in r]
        if failed:
            results.setdefault("errors", {})["concurrent"] = "; ".join(failed)
    load_after = os.getloadavg()
    results.update(seconds=time.perf_counter() - started, loadavg=[load_before[0], load_after[0]])

    print()
    print_table(f"{name} ({s.device}), torch {torch.__version__}, {s.victim}, {s.precision}, protocol {s.protocol} batch 128; "
                f"training {s.train_images} images, crafting {s.craft_images} images", rows_of(s, results))
    busy = ""
    if not gpu and max(load_before[0], load_after[0]) > torch.get_num_threads() + 0.5:
        busy = " — other processes were computing: trust the ratios, not the absolute numbers"
    print(f"\n{results['data']}; {torch.get_num_threads()} threads; {results['seconds']:.0f} s; "
          f"load average {load_before[0]:.2f} → {load_after[0]:.2f}{busy}.")
    print("Targets are information: missed or met, the exit status is 0 (1 only if a section above FAILED).")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 1 if results.get("errors") else 0  # a crashed section is a bug to see; a missed target is not


if __name__ == "__main__":
    sys.exit(main())

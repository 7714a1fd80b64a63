"""One cell on this device: what do its training epoch and its crafting pass cost, each as a
ratio to a bare loop run side by side in the same process?  Runs unchanged on a CPU and a GPU.

Absolute numbers on shared machines drift 2× from minute to minute; a ratio between loops timed
next to each other drifts much less.  The device's protocol is the one ``uebench run`` uses there
(paper: ResNet-18, bf16 on a GPU; cpu: cnn-small, fp32 on a CPU), batch 128, channels_last.

1. training — ``uebench.train.Trainer.fit`` (1 epoch, NoDefense, the protocol's precision) ÷ a
   bare loop: same victim, SGD(0.9, wd 5e-4), autocast, on pre-made float tensors in consecutive
   slices.  The bare loop at batch 512 is shown too; ``--compile MODE`` times the compiled
   Trainer and the eager one beside it.
2. crafting — ``MinMinCrafter.perturbation_pass()`` (sample-wise) in image·steps/s ÷ a raw loop of
   forward + cross-entropy + gradient w.r.t. the input only, batch 512, BN folded as the pass does.

How the throughput grows when several cells share the device is ``bench_concurrent.py``'s question.
Usage: ``python benchmarks/bench_cell.py [--device cpu|cuda|cuda:N] [--compile reduce-overhead] [--quick] [--json out.json]``.
Exits 0 whether targets are met or not (they are information, see benchmarks/README.md); 1 only
when a section crashed.
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F
from _common import (
    EPS,
    Row,
    TrainBench,
    add_device_args,
    build_victim,
    device_name,
    device_settings,
    finish,
    load_data,
    log,
    median,
    parse_device_args,
    parser,
    pick,
    print_table,
    section,
    sync,
    target_row,
    timed,
)

from uebench.attacks.base import CraftContext
from uebench.attacks.errmin_pgd import ErrMinPGD
from uebench.compute import autocast, frozen_copy
from uebench.craft.solvers import MinMinCrafter
from uebench.protocols import PROTOCOLS

CRAFT_BATCH = 512  # the paper's crafting batch
TRAIN_BARE_TARGET = 0.90  # Trainer ÷ bare loop
RECORDED_GPU = {"img_per_s": 11_200.0, "epoch_s": 4.2}  # one paper cell (ResNet-18, bf16) before the speed-up work
CELL_SPEEDUP_TARGET = 2.5  # one paper cell trains ≥ 2.5× faster than the recorded baseline


# --------------------------------------------------------------------------------------------
# 1. training


def bench_training(s, x: torch.Tensor, y: torch.Tensor) -> dict:
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

    def __init__(self, s, x: torch.Tensor, y: torch.Tensor):
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


def bench_crafting(s, x: torch.Tensor, y: torch.Tensor) -> dict:
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
# report


def rows_of(s, results: dict) -> list[Row]:
    """The table: each section's baseline (= base), then uebench's rate as a ratio of it."""
    rows = [Row(f"{key}: FAILED", note=error[:150]) for key, error in results.get("errors", {}).items()]
    if "training" in results:
        t = results["training"]
        m, b = t["median"], t["median"]["bare_128"]
        rows.append(Row(f"bare loop, batch {t['batch']}", f"{b:,.0f} img/s", "= base",
                        note="pre-made float tensors, consecutive slices"))
        compiled = t.get("compile", "none") != "none"
        if compiled:
            rows.append(Row(f"uebench Trainer, batch {t['batch']}, eager", f"{m['trainer_eager']:,.0f} img/s",
                            f"{m['trainer_eager'] / b:.2f}×", note="without --compile, for the ratio below"))
        vs_eager = f"; {m['trainer'] / m['trainer_eager']:.2f}× eager" if compiled else ""
        rows.append(target_row(f"uebench Trainer, batch {t['batch']}" + (f", --compile {t['compile']}" if compiled else ""),
                               f"{m['trainer']:,.0f} img/s", t["trainer_over_bare"], TRAIN_BARE_TARGET,
                               "1 epoch, NoDefense, no evaluation" + vs_eager))
        rows.append(Row("bare loop, batch 512", f"{m['bare_512']:,.0f} img/s", f"{m['bare_512'] / b:.2f}×", note="information"))
        if s.gpu:  # the baseline: one paper cell before the speed-up work (ResNet-18, bf16)
            same, rec = s.victim == "resnet18" and s.precision == "bf16", RECORDED_GPU
            epoch = 50_000 / m["trainer"]
            note = "" if same else "the recorded cell is resnet18 bf16: not comparable"
            rows.append(target_row(f"Trainer vs recorded {rec['img_per_s']:,.0f} img/s", f"{m['trainer']:,.0f} img/s",
                                   m["trainer"] / rec["img_per_s"], CELL_SPEEDUP_TARGET, note, judge=same))
            rows.append(target_row(f"Trainer epoch at 50,000 images vs recorded {rec['epoch_s']:g} s", f"{epoch:.2f} s",
                                   rec["epoch_s"] / epoch, CELL_SPEEDUP_TARGET, note, judge=same))
    if "crafting" in results:
        c = results["crafting"]
        rows.append(Row(f"raw fwd+CE+grad-to-input, batch {c['raw_batch']}",
                        f"{median(c['raw_img_steps_per_s']):,.0f} img·step/s", "= base",
                        note="BN folded (frozen_copy), as the pass runs"))
        rows.append(Row(f"perturbation_pass, T={c['steps']}", f"{median(c['pass_img_steps_per_s']):,.0f} img·step/s",
                        f"{c['pass_over_raw']:.2f}×", note="paired with adjacent raw probes; includes the error count"))
    return rows


def main(argv=None) -> int:
    ap = parser(__doc__, "tiny sizes: 1,024 training and crafting images, T=5, 1 round")
    add_device_args(ap)
    ap.add_argument("--craft-images", type=int, help="images in the timed perturbation pass (default: 10,240 cuda / 2,048 cpu)")
    ap.add_argument("--craft-steps", type=int, help="T, PGD steps of the timed pass (default 20, --quick 5)")
    ap.add_argument("--rounds", type=int, help="interleaved repetitions of sections 1-2, medians reported (default 2, --quick 1)")
    ap.add_argument("--skip-training", action="store_true", help="skip section 1")
    ap.add_argument("--skip-crafting", action="store_true", help="skip section 2")
    args = parse_device_args(ap, argv)
    s = device_settings(args, train_images=pick(args, args.train_images, 1024, 50_000, 10_000),
                        craft_images=pick(args, args.craft_images, 1024, 10_240, 2048),
                        craft_steps=pick(args, args.craft_steps, 5, 20, 20), rounds=pick(args, args.rounds, 1, 2, 2),
                        min_seconds=0.5 if args.quick else 2.0)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    name = device_name(s.device)
    log(f"{s.device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, protocol {s.protocol}, "
        f"{s.precision}, victim {s.victim}, load average {load_before:.1f}")
    results: dict = {"device": str(s.device), "device_name": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "settings": s.as_json()}
    x, y, results["data"] = load_data(s, max(s.train_images if not args.skip_training else 0,
                                             s.craft_images if not args.skip_crafting else 0, 1))
    if not args.skip_training:
        section(results, "training", bench_training, s, x[: s.train_images], y[: s.train_images])
    if not args.skip_crafting:
        section(results, "crafting", bench_crafting, s, x[: s.craft_images], y[: s.craft_images])
    print()
    print_table(f"{name} ({s.device}), torch {torch.__version__}, {s.victim}, {s.precision}, protocol {s.protocol} batch 128; "
                f"training {s.train_images} images, crafting {s.craft_images} images", rows_of(s, results))
    finish(results, started, load_before, gpu=s.gpu, json_path=args.json)
    return 1 if results.get("errors") else 0  # a crashed section is a bug to see; a missed target is not


if __name__ == "__main__":
    sys.exit(main())

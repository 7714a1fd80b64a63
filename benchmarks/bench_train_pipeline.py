"""Training throughput on a CPU: how fast does uebench's Trainer train a victim on a poisoned set,
against a bare loop on pre-made tensors and against a torchvision DataLoader + PIL pipeline?

``uebench.train.Trainer.fit`` (1 epoch, NoDefense, cnn-small, batch 128, fp32 channels_last) on
the released (uint8) poisoned set, versus a bare loop on pre-made float tensors (NCHW and
channels_last) and versus a DataLoader + RandomCrop/flip/ToTensor (workers 0 and 2).  The
variants run in interleaved rounds, each result is the median over the rounds, and every number
is a ratio to a baseline timed in the same minutes (absolute numbers on a shared 2-core box drift
by 2× or more).

Usage: ``python benchmarks/bench_train_pipeline.py [--quick] [--json out.json]``; see
benchmarks/README.md § 2.  The PASS/MISS column is information: the exit status is 0.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from _common import EPS, HWCImages, Row, finish, load_images, log, median, parser, print_table, target_row
from torch import nn

from uebench.compute import prepare_model, resolve_precision
from uebench.defenses.standard import NoDefense
from uebench.noise import Noise
from uebench.poison import release
from uebench.train import TrainData, Trainer, TrainSettings
from uebench.victims.cifar import SmallCNN

BARE_TARGET, DATALOADER_TARGET = 0.90, 2.0  # Trainer ÷ bare loop; Trainer ÷ DataLoader + PIL


@dataclass
class Settings:
    quick: bool
    train_images: int
    train_rounds: int  # interleaved rounds of every training variant
    train_batch: int = 128
    train_lr: float = 0.05

    @classmethod
    def preset(cls, quick: bool) -> Settings:
        return cls(quick, train_images=1536, train_rounds=1) if quick else cls(quick, train_images=5000, train_rounds=2)


def small_cnn() -> nn.Module:
    return SmallCNN().build(10, (3, 32, 32))


@dataclass
class TrainVariant:
    name: str
    kind: str  # uebench | bare | dataloader
    rates: list[float] = field(default_factory=list)  # images/s, one per round

    @property
    def throughput(self) -> float:
        return median(self.rates)


class TrainingBench:
    def __init__(self, x: torch.Tensor, y: torch.Tensor, s: Settings, seed: int = 0):
        from torchvision import transforms

        self.s, self.x, self.y, self.seed = s, x, y, seed
        self.init = small_cnn().state_dict()
        g = torch.Generator().manual_seed(seed)
        # a sample-wise noise, as a poisoned training set carries one
        self.noise = Noise((torch.rand(len(y), 3, 32, 32, generator=g) * 2 - 1) * EPS, "sample", EPS)
        poisoned = (x.float().div(255) + self.noise.delta).clamp_(0, 1)
        self.premade = poisoned  # float NCHW, what the bare loop trains on
        self.poisoned_hwc = poisoned.mul(255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        self.pil_transform = transforms.Compose(
            [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
        )
        self.variants = [TrainVariant("uebench Trainer (fp32 channels_last)", "uebench")]
        self.dataloader_layouts: list[str] = []
        for layout in ("nchw", "channels_last"):
            self.variants.append(TrainVariant(f"bare loop, float tensors ({layout})", "bare"))
        # the DataLoader pipelines train the model in whichever layout won the bare loop that round
        for workers in (0, 2):
            self.variants.append(TrainVariant(f"DataLoader+PIL, workers={workers} (best layout)", "dataloader"))

    def model(self, channels_last: bool) -> nn.Module:
        m = small_cnn()
        m.load_state_dict(self.init)
        return prepare_model(m, torch.device("cpu"), channels_last).train()

    def optimizer(self, model):
        return torch.optim.SGD(model.parameters(), lr=self.s.train_lr, momentum=0.9, weight_decay=5e-4)

    # -- uebench ---------------------------------------------------------------------------------
    def run_uebench(self, n: int | None = None) -> float:
        n = len(self.y) if n is None else n
        device = torch.device("cpu")
        precision = resolve_precision("auto", device)
        settings = TrainSettings(epochs=1, batch_size=self.s.train_batch, lr=self.s.train_lr, precision=precision,
                                 channels_last=True)
        released = release(self.x[:n], self.y[:n], Noise(self.noise.delta[:n], "sample", EPS))
        empty = self.x[:0]  # no test set: the per-epoch evaluation is not part of training throughput
        model = self.model(channels_last=True)
        trainer = Trainer(model, TrainData(released, self.y[:n], 10), settings, [NoDefense()],
                          torch.Generator().manual_seed(self.seed), torch.Generator().manual_seed(self.seed + 1), device)
        t0 = time.perf_counter()
        trainer.fit(empty, self.y[:0])
        return n / (time.perf_counter() - t0)

    # -- bare loop ---------------------------------------------------------------------------------
    def run_bare(self, channels_last: bool, warmup: int = 3) -> float:
        model = self.model(channels_last)
        opt = self.optimizer(model)
        order = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(self.seed))
        x, y = self.premade[order], self.y[order]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        b = self.s.train_batch

        def step(start):
            loss = F.cross_entropy(model(x[start : start + b]), y[start : start + b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for i in range(warmup):
            step(i * b)
        t0 = time.perf_counter()
        for start in range(0, len(y), b):
            step(start)
        return len(y) / (time.perf_counter() - t0)

    # -- torchvision DataLoader + PIL transforms ---------------------------------------------------
    def run_dataloader(self, workers: int, channels_last: bool, skip: int = 3) -> float:
        model = self.model(channels_last)
        opt = self.optimizer(model)
        loader = torch.utils.data.DataLoader(
            HWCImages(self.poisoned_hwc, self.y.numpy(), self.pil_transform),
            batch_size=self.s.train_batch, shuffle=True, num_workers=workers,
            generator=torch.Generator().manual_seed(self.seed),
        )
        seen, t0, skip = 0, None, min(skip, len(loader) - 1)  # a tiny run keeps one timed batch
        for i, (images, labels) in enumerate(loader):
            if i == skip:  # the first batches pay for worker start-up and kernel selection
                t0, seen = time.perf_counter(), 0
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(images), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
            seen += len(labels)
        return seen / (time.perf_counter() - t0)

    def run_round(self):
        bare_rates = {}
        for v in self.variants:
            if v.kind == "uebench":
                v.rates.append(self.run_uebench())
            elif v.kind == "bare":
                cl = "channels_last" in v.name
                v.rates.append(self.run_bare(cl))
                bare_rates[cl] = v.rates[-1]
            else:
                workers = int(v.name.split("workers=")[1].split()[0])
                cl = max(bare_rates, key=bare_rates.get)
                v.rates.append(self.run_dataloader(workers, cl))
                self.dataloader_layouts.append("channels_last" if cl else "nchw")

    def warmup(self):
        self.run_uebench(n=min(len(self.y), 2 * self.s.train_batch + 8))
        for cl in (False, True):
            m = self.model(cl)
            xb = self.premade[: self.s.train_batch]
            xb = xb.contiguous(memory_format=torch.channels_last) if cl else xb
            F.cross_entropy(m(xb), self.y[: self.s.train_batch]).backward()

    def best(self, kind: str) -> TrainVariant:
        return max((v for v in self.variants if v.kind == kind), key=lambda v: v.throughput)


def bench_training(s: Settings, x: torch.Tensor, y: torch.Tensor) -> tuple[list[Row], dict]:
    tb = TrainingBench(x, y, s)
    log("training: warm-up")
    tb.warmup()
    for r in range(s.train_rounds):
        log(f"training: round {r + 1}/{s.train_rounds} on {len(y)} images")
        tb.run_round()
    ue, bare, dl = tb.best("uebench"), tb.best("bare"), tb.best("dataloader")
    rows = []
    for v in tb.variants:
        note = "best bare loop" if v is bare else "best DataLoader pipeline" if v is dl else ""
        if v.kind == "dataloader":
            note = ", ".join(filter(None, [note, "model layout: " + "/".join(sorted(set(tb.dataloader_layouts)))]))
        rows.append(Row(v.name, f"{v.throughput:,.0f} img/s", note=note))
    rows.append(target_row("Trainer ÷ bare loop", f"{ue.throughput:,.0f} / {bare.throughput:,.0f}",
                           ue.throughput / bare.throughput, BARE_TARGET, "bare: no crop/flip, no noise, no scheduler"))
    rows.append(target_row("Trainer ÷ DataLoader + PIL transforms", f"{ue.throughput:,.0f} / {dl.throughput:,.0f}",
                           ue.throughput / dl.throughput, DATALOADER_TARGET,
                           "RandomCrop(32, 4) + flip + ToTensor, best of workers 0/2"))
    results = {"img_per_s": {v.name: v.rates for v in tb.variants},
               "over_bare": ue.throughput / bare.throughput, "over_dataloader": ue.throughput / dl.throughput}
    return rows, results


def main(argv=None) -> int:
    ap = parser(__doc__, "small sizes (1,536 images, 1 round) instead of the full run (5,000 images, 2 rounds)")
    ap.add_argument("--train-images", type=int, help="images per training epoch (default 5,000, --quick 1,536)")
    ap.add_argument("--train-rounds", type=int, help="interleaved rounds of the training variants (default 2, --quick 1)")
    args = ap.parse_args(argv)
    s = Settings.preset(args.quick)
    for key in ("train_images", "train_rounds"):
        if getattr(args, key) is not None:
            setattr(s, key, getattr(args, key))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    x, y, source = load_images(args.data_dir, s.train_images, args.synthetic)
    log(f"data: {source}; torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load_before:.1f}")
    results: dict = {"settings": dict(s.__dict__), "data": source, "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "machine": platform.machine()}
    rows, results["training"] = bench_training(s, x, y)
    print()
    print_table(f"training — cnn-small, batch {s.train_batch}, 1 epoch, NoDefense, {s.train_images} images "
                f"({'quick' if s.quick else 'full'} mode)", rows)
    finish(results, started, load_before, json_path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

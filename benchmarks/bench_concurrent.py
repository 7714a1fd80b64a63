"""Concurrent cells: how does the total training throughput of a device grow when K cells share
it?  Runs unchanged on a CPU and a GPU.

K worker processes (this script with a hidden ``--_worker`` flag) each load the data, build the
Trainer of ``bench_cell.py``'s section 1 (the device's protocol, batch 128, NoDefense, 1 epoch)
and warm it up, then wait at a start barrier; each times one epoch.  The total is all images ÷
(last end − first start), in wall-clock time, so a straggler is not hidden by summing per-worker
rates, and every K is reported as a ratio to K = 1 measured the same way.

Usage: ``python benchmarks/bench_concurrent.py [--device cpu|cuda|cuda:N] [--concurrent 1,2,4] [--json out.json]``.
Exits 0 whether the target is met or not (it is information, see benchmarks/README.md); 1 only
when a worker crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import (
    Row,
    TrainBench,
    add_device_args,
    device_name,
    device_settings,
    finish,
    load_data,
    log,
    parse_device_args,
    parser,
    pick,
    print_table,
    section,
)

GPU_TOTAL_TARGET = 30_000.0  # img/s per GPU, summed over several concurrent cells


def worker(s) -> int:
    """One cell: warm up, say ``ready``, wait for ``go`` on stdin, time one epoch, print it as
    JSON.  The barrier keeps start-up (imports, CUDA context, data) out of the overlap."""
    x, y, source = load_data(s, s.train_images)
    tb = TrainBench(s, x, y)
    tb.warmup()
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.time()
    rate = tb.trainer_rate()
    print(json.dumps({"img_per_s": rate, "start": start, "end": time.time(), "images": len(y),
                      "data": source}), flush=True)
    return 0


def run_concurrent(s, k: int, threads: int) -> dict:
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


def bench_concurrent(s, ks: list[int], threads: int | None, done=lambda out: None) -> dict:
    """Every K in turn; ``done(out)`` after each, so a run stopped part-way keeps the Ks it measured."""
    out = {}
    for k in ks:
        per = threads or max(1, (os.cpu_count() or 1) // k)  # unset: the cores shared out, not oversubscribed
        log(f"concurrent: {k} worker(s) × {s.train_images} images, {per} thread(s) each")
        out[k] = run_concurrent(s, k, per)
        base = out.get(1, {}).get("total_img_per_s")
        for r in out.values():
            if base and "total_img_per_s" in r:
                r["over_k1"] = r["total_img_per_s"] / base
        done(out)
    return out


def rows_of(s, results: dict) -> list[Row]:
    rows = [Row(f"{key}: FAILED", note=error[:150]) for key, error in results.get("errors", {}).items()]
    for k, r in results.get("concurrent", {}).items():
        if "error" in r:
            continue  # shown by the FAILED row
        target = f"≥ {GPU_TOTAL_TARGET:,.0f} img/s" if s.gpu and k > 1 else ""
        each = ", ".join(f"{w['img_per_s']:,.0f}" for w in r["workers"])
        rows.append(Row(f"{k} concurrent cell(s), total", f"{r['total_img_per_s']:,.0f} img/s",
                        f"{r['over_k1']:.2f}×" if "over_k1" in r else "", target,
                        ("PASS" if r["total_img_per_s"] >= GPU_TOTAL_TARGET else "MISS") if target else "",
                        f"per worker: {each} img/s"))
    return rows


def main(argv=None) -> int:
    ap = parser(__doc__, "tiny sizes: 1,024 training images per worker",
                "torch intra-op CPU threads of each worker (default: the CPU cores divided by K)")
    add_device_args(ap)
    ap.add_argument("--concurrent", help="comma-separated worker counts (default: 1,2,4 cuda; 1,2 cpu)")
    ap.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    args = parse_device_args(ap, argv)
    s = device_settings(args, train_images=pick(args, args.train_images, 1024, 50_000, 10_000))
    if args._worker:
        return worker(s)
    ks = [int(k) for k in (args.concurrent or ("1,2,4" if s.gpu else "1,2")).split(",") if k.strip()]
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    name = device_name(s.device)
    log(f"{s.device} ({name}), torch {torch.__version__}, protocol {s.protocol}, {s.precision}, victim {s.victim}, "
        f"load average {load_before:.1f}")
    results: dict = {"device": str(s.device), "device_name": name, "torch": torch.__version__, "settings": s.as_json()}

    def partial(out: dict) -> None:  # the Ks so far, in case the run is stopped before the end (gpu_check.sh's timeouts)
        if args.json:
            args.json.write_text(json.dumps({**results, "concurrent": out, "partial": True}, indent=2, default=str))

    section(results, "concurrent", bench_concurrent, s, ks, args.threads, partial)
    results["data"] = next((w["data"] for r in results.get("concurrent", {}).values() for w in r.get("workers", [])), "")
    failed = [r["error"] for r in results.get("concurrent", {}).values() if "error" in r]
    if failed:
        results.setdefault("errors", {})["concurrent"] = "; ".join(failed)
    print()
    print_table(f"{name} ({s.device}), torch {torch.__version__}, {s.victim}, {s.precision}, protocol {s.protocol} batch 128; "
                f"{s.train_images} training images per cell" + (f", --compile {s.compile}" if s.compile != "none" else ""),
                rows_of(s, results))
    finish(results, started, load_before, gpu=s.gpu, json_path=args.json)
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())

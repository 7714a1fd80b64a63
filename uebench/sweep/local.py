"""The local executor: cells one after another, or ``jobs`` at a time in worker processes.

Workers return (row, curve) and the driver alone writes them (``runner.record``): a results row
is appended atomically under a file lock, so a kill at any moment loses at most the cells in
flight, and a rerun of the sweep does exactly those.  A cell that fails (a plugin raised, training
diverged: :class:`~uebench.failures.CellFailure`) is reported and the others go on; it has no row,
so the rerun retries it.  Cells that need the same noise wait for
each other on the noise cache's lock and craft it once; with ``jobs`` > 1 each distinct noise's
first cell is started before the rest, so workers craft different noises side by side.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from uebench.progress import NULL_REPORTER, Reporter
from uebench.runner import run_cell
from uebench.sweep.plan import SweepOutcome, SweepPlan, crafting_first, threads_per_job

_WORKER_DEVICE: str | None = None  # set once per worker process by _init_worker


def worker_devices(jobs: int, requested: str, gpu_count: int) -> list[str | None]:
    """The device of each of ``jobs`` workers.  With ``--device auto``/``cuda`` and k GPUs, worker
    i takes ``cuda:(i mod k)``: ``--jobs k`` is one worker per GPU, ``--jobs 2k`` two per GPU
    (one ResNet-18 cell leaves a large GPU mostly idle).  Otherwise None: each cell's own
    ``--device`` (the CPU, or the one GPU named)."""
    if gpu_count <= 0 or requested not in ("auto", "cuda"):
        return [None] * jobs
    return [f"cuda:{i % gpu_count}" for i in range(jobs)]


def _init_worker(devices) -> None:
    """Pool initializer: take this worker's device from the queue (None when the pool replaced a
    worker and the queue is empty: the cell's own device then)."""
    global _WORKER_DEVICE
    try:
        _WORKER_DEVICE = devices.get_nowait()
    except queue.Empty:
        _WORKER_DEVICE = None


def _work(spec, settings, expected_key: str, threads: int, expected_noise: str | None = None):
    """In a worker process: prepare and run one cell, quietly; return its row and curve.

    A CPU cell computes on its protocol's pinned threads (``Numerics.apply`` in ``load_cell``);
    ``threads`` (the machine's cores shared among the workers) is only for a cell on an
    accelerator, whose numerics do not depend on the host's thread count."""
    import torch

    from uebench.sweep.plan import prepared_again

    if _WORKER_DEVICE is not None:
        settings = dataclasses.replace(settings, device=_WORKER_DEVICE)
    cell = prepared_again(spec, settings, expected_key, expected_noise)
    if cell.numerics.threads is None:
        torch.set_num_threads(threads)
    return run_cell(cell, NULL_REPORTER)


def run_local(plan: SweepPlan, reporter: Reporter = NULL_REPORTER, jobs: int = 1) -> SweepOutcome:
    todo = plan.todo
    bar = reporter.task(f"sweep ({len(plan.done)} of {len(plan.cells)} cells done before)", total=len(todo))
    outcome = SweepOutcome()
    if jobs <= 1:
        for _, cell in todo:
            outcome.collect(plan.out, cell, lambda cell=cell: run_cell(cell, reporter), reporter, bar)
    else:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        assigned = worker_devices(jobs, plan.settings.device, gpus)
        if gpus:
            reporter.log(f"{jobs} workers on {gpus} GPU(s): {', '.join(str(d) for d in assigned)}")
        spawn = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
        devices = spawn.Queue()
        for device in assigned:
            devices.put(device)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=spawn, initializer=_init_worker, initargs=(devices,)) as pool:
            pending = {pool.submit(_work, cell.spec, cell.settings, key, threads_per_job(jobs)): cell
                       for key, cell in crafting_first(todo)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome.collect(plan.out, pending.pop(future), future.result, reporter, bar)
    bar.close()
    return outcome

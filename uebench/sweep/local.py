"""The local executor: cells one after another, or ``jobs`` at a time in worker processes.

Workers return (row, curve) and the driver alone writes them (``runner.record``): a results row
is appended atomically under a file lock, so a kill at any moment loses at most the cells in
flight, and a rerun of the sweep does exactly those.  A cell that fails (a plugin raised, training
diverged: :class:`~uebench.failures.CellFailure`) is reported and the others go on; it has no row,
so the rerun retries it.  Cells that need the same noise wait for
each other on the noise cache's lock and craft it once.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from uebench.failures import CellFailure
from uebench.progress import NULL_REPORTER, Reporter
from uebench.runner import record, run_cell
from uebench.sweep.plan import SweepOutcome, SweepPlan, threads_per_job


def _work(spec, threads: int):
    """In a worker process: prepare and run one cell, quietly; return its row and curve."""
    import torch

    from uebench.runner import prepare

    torch.set_num_threads(threads)
    return run_cell(prepare(spec), NULL_REPORTER)


def run_local(plan: SweepPlan, reporter: Reporter = NULL_REPORTER, jobs: int = 1) -> SweepOutcome:
    todo = plan.todo
    bar = reporter.task(f"sweep ({len(plan.done)} of {len(plan.cells)} cells done before)", total=len(todo))
    outcome = SweepOutcome()

    def finished(row, history):
        record(plan.out, row, history)
        outcome.rows.append(row)
        bar.update(1, last=f"{row['attack']}×{row['defense']} s{row['seed']}: {100 * row['final_test_acc']:.1f}%")

    if jobs <= 1:
        for _, cell in todo:
            try:
                result = run_cell(cell, reporter)
            except CellFailure as exc:
                outcome.fail(cell, exc, reporter)
                bar.update(1)
                continue
            finished(*result)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            pending = {pool.submit(_work, cell.spec, threads_per_job(jobs)): cell for _, cell in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    cell = pending.pop(future)
                    try:
                        result = future.result()
                    except CellFailure as exc:
                        outcome.fail(cell, exc, reporter)
                        bar.update(1)
                        continue
                    finished(*result)
    bar.close()
    return outcome

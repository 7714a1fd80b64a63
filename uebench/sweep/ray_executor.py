"""The Ray executor: the same sweep on a Ray cluster (or a local Ray), crafting first, then training.

Crafting tasks come first, one per distinct noise the cells still need, so that no two training
tasks craft the same noise; then one training task per cell.  Each task prepares its cell from
the ``CellSpec`` (plain data, cheap to ship), runs on a worker with ``num_cpus`` /``num_gpus``,
and returns (row, curve); the driver alone appends rows as results stream back (``ray.wait``),
so a killed sweep is resumed by running it again, as with the local executor.  Workers on other
machines must see the same data root and noise cache (a shared filesystem: ``--data-dir``,
``--cache-dir``).  Ray is an optional extra: ``pip install -e '.[ray]'``.
"""

from __future__ import annotations

import socket

from uebench.failures import CellFailure
from uebench.options import OptionError
from uebench.progress import NULL_REPORTER, Reporter
from uebench.sweep.plan import SweepOutcome, SweepPlan, noise_group


def _craft(spec, settings, expected_key: str, threads: int) -> str:
    """On a worker: craft (or find cached) the noise of ``spec``'s cell; returns its cache key,
    which the cell's training task checks it names too."""
    import torch

    from uebench.runner import cell_noise, load_cell
    from uebench.sweep.plan import prepared_again

    cell = prepared_again(spec, settings, expected_key)
    if cell.numerics.threads is None:  # a CPU cell computes on its pinned threads (``load_cell``)
        torch.set_num_threads(threads)
    return cell_noise(cell, load_cell(cell)).key


def _train(spec, settings, expected_key: str, threads: int, expected_noise: str | None):
    from uebench.sweep.local import _work

    return _work(spec, settings, expected_key, threads, expected_noise)


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail in seconds on an address nothing listens at: ``ray.init`` itself retries for minutes.
    ``None``/``auto``/``local`` (a local Ray) are not checked."""
    if not address or address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise OptionError(f"--address {address!r} is not an address: give host:port, ray://host:port or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise OptionError(
            f"cannot reach the Ray cluster at {address!r}: {exc}. Is `ray start --head` running there "
            f"(its GCS port, 6379 by default)? --address auto joins a Ray already running on this machine"
        ) from None


def run_ray(plan: SweepPlan, reporter: Reporter = NULL_REPORTER, address: str | None = None,
            cpus_per_cell: float = 1, gpus_per_cell: float | None = None) -> SweepOutcome:
    try:
        import ray
    except ImportError:
        raise OptionError("the ray executor needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')") from None
    if not ray.is_initialized():
        check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise OptionError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    if gpus_per_cell is None:  # one GPU a cell where the cluster has GPUs; --gpus-per-cell 0.5 shares one
        gpus_per_cell = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    threads = max(1, int(cpus_per_cell))
    options = {"num_cpus": cpus_per_cell, "num_gpus": gpus_per_cell}
    craft, train = ray.remote(_craft).options(**options), ray.remote(_train).options(**options)

    todo, outcome = plan.todo, SweepOutcome()
    needs = {}  # noise group → (cell key, cell) of its first cell
    for key, cell in todo:
        group = noise_group(cell)
        if group is not None and group not in needs:
            needs[group] = (key, cell)
    bar = reporter.task(f"crafting on Ray ({len(needs)} noises)", total=len(needs))
    pending = {craft.remote(cell.spec, cell.settings, key, threads): group for group, (key, cell) in needs.items()}
    # group → the crafting task's noise key, or its error (its cells then fail without crafting again)
    crafted, craft_failed = {}, {}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        group = pending.pop(done[0])
        try:
            crafted[group] = ray.get(done[0])
        except CellFailure as exc:
            craft_failed[group] = exc
        bar.update(1)
    bar.close()

    bar = reporter.task(f"sweep on Ray ({len(plan.done)} of {len(plan.cells)} cells done before)", total=len(todo))
    pending = {}
    for key, cell in todo:
        group = noise_group(cell)
        if group in craft_failed:
            outcome.fail(cell, craft_failed[group], reporter, bar)
        else:
            pending[train.remote(cell.spec, cell.settings, key, threads, crafted.get(group))] = cell
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        cell = pending.pop(done[0])
        outcome.collect(plan.out, cell, lambda ref=done[0]: ray.get(ref), reporter, bar)  # the driver alone writes the CSV
    bar.close()
    return outcome

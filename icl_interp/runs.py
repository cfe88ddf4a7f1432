"""The run kernel: compute a list of units on a backend, and get each result as it finishes.

A command describes its work as *units* (picklable keys, such as ``(model, data, seed)``) and
one *worker*: a picklable callable that computes a unit and returns its result. The worker may
keep state between units (``compare``'s keeps the last model it loaded), so it is built once
per process and reused. ``map_units(worker, units, backend)`` yields ``(unit, result)`` pairs
in the order they finish; the driver writes each result into its result folder as it arrives,
so one claim/resume path (``icl_interp.results.ResultFolder``) serves every backend.

Backends (``BACKENDS``, the ``--backend`` option of ``compare`` and ``synthetic``):

- ``serial``: in this process, one unit after another;
- ``processes``: ``workers`` local processes (spawned; they die with the driver);
- ``ray``: ``workers`` Ray actors, on a local Ray started for the run or on the cluster that
  ``RAY_ADDRESS`` names;
- ``submitit``: one job per unit in a job array, on SLURM where ``sbatch`` exists and as local
  processes elsewhere (submitit's local executor); its job files go to ``Backend.folder``.

Every backend other than ``serial`` loads the driver's plugins (``icl_interp.plugins``) in each
worker before the first unit; every backend runs units on ``Backend.threads`` torch threads. A
``UserError`` raised by a worker reaches the driver as the same one-line error.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icl_interp.errors import UserError
from icl_interp.options import check_backend_options
from icl_interp.progress import progress
from icl_interp.results import JOB_FILES

BACKENDS = ("serial", "processes", "ray", "submitit")
SUBMITIT_POLL_SECONDS = 2.0

Worker = Callable[[Any], Any]


@dataclass(frozen=True)
class Backend:
    """Where units run: ``name`` one of ``BACKENDS``; ``workers`` units at a time (processes,
    Ray) or at most in flight (submitit); ``threads`` torch threads per worker (None: torch's
    choice); ``folder`` for submitit's job files."""

    name: str = "serial"
    workers: int = 1
    threads: int | None = None
    folder: Path | None = None

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise UserError(f"unknown backend {self.name!r}; choose from {', '.join(BACKENDS)}")
        check_backend_options(self.name, self.workers, self.threads)
        if self.name == "submitit" and self.folder is None:
            raise UserError("the submitit backend needs a folder for its job files")


def backend_for(name: str, workers: int, threads: int | None, out: Path) -> Backend:
    """The backend a command's ``--backend``/``--workers``/``--threads`` ask for; ``auto`` is
    ``serial`` for one worker and ``processes`` for more. Submitit's job files go to
    ``out/.submitit`` (``JOB_FILES``, which a result folder tolerates before it is claimed)."""
    if name == "auto":
        name = "serial" if workers == 1 else "processes"
    if threads is None and name != "serial":
        threads = 1
    return Backend(name, workers, threads, Path(out) / JOB_FILES)


def map_units(
    worker: Worker, units: Sequence[Any], backend: Backend, *, desc: str = "units"
) -> Iterator[tuple[Any, Any]]:
    """``(unit, worker(unit))`` for every unit, in the order they finish, on ``backend``."""
    units = list(units)
    if not units:
        return iter(())
    run = {
        "serial": _serial,
        "processes": _processes,
        "ray": _ray,
        "submitit": _submitit,
    }[backend.name]
    pairs = run(worker, units, backend)
    return iter(progress(pairs, total=len(units), desc=desc, unit="unit"))


class _Failed:
    """A worker's ``UserError``, carried back as a value (submitit keeps only tracebacks)."""

    def __init__(self, message: str) -> None:
        self.message = message


def _call(worker: Worker, unit: Any) -> tuple[Any, Any]:
    try:
        return unit, worker(unit)
    except UserError as err:
        return unit, _Failed(str(err))


def _checked(pairs: Iterable[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
    for unit, result in pairs:
        if isinstance(result, _Failed):
            raise UserError(result.message)
        yield unit, result


def _prepare(plugins: Sequence[str], threads: int | None) -> None:
    """A worker's start: the driver's plugins, and its torch threads."""
    from icl_interp.plugins import load_plugins

    load_plugins(plugins)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _plugins() -> tuple[str, ...]:
    from icl_interp.plugins import loaded_plugins

    return tuple(loaded_plugins())


def _serial(worker: Worker, units: list[Any], backend: Backend) -> Iterator[tuple[Any, Any]]:
    from icl_interp.threads import torch_threads

    with torch_threads(backend.threads):
        for unit in units:
            yield unit, worker(unit)


# ----------------------------------------------------------------- local processes

_PROCESS_WORKER: list[Worker] = []  # the worker of this pool process, set by _start_process


def _start_process(worker: Worker, plugins: tuple[str, ...], threads: int | None) -> None:
    _prepare(plugins, threads)
    _PROCESS_WORKER.append(worker)


def _in_process(unit: Any) -> tuple[Any, Any]:
    return _call(_PROCESS_WORKER[0], unit)


def _processes(worker: Worker, units: list[Any], backend: Backend) -> Iterator[tuple[Any, Any]]:
    from icl_interp.workers import process_pool

    context = multiprocessing.get_context("spawn")
    jobs = min(backend.workers, len(units))
    setup = (_start_process, (worker, _plugins(), backend.threads))
    with process_pool(jobs, context, setup=setup) as pool:
        futures = [pool.submit(_in_process, unit) for unit in units]
        yield from _checked(future.result() for future in as_completed(futures))


# ----------------------------------------------------------------- Ray


class _RayActor:
    """One Ray worker: the driver's plugins and threads, then units through ``worker``."""

    def __init__(self, worker: Worker, plugins: tuple[str, ...], threads: int | None) -> None:
        _prepare(plugins, threads)
        self.worker = worker

    def compute(self, unit: Any) -> tuple[Any, Any]:
        return _call(self.worker, unit)


def _installed(module: str, backend: str, extra: str) -> Any:
    """``module`` imported, or a one-line ``UserError`` saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f'--backend {backend} needs {module}: pip install "icl-interp[{extra}]" '
            f'(in a checkout: pip install -e ".[{extra}]")'
        ) from None


def _ray(worker: Worker, units: list[Any], backend: Backend) -> Iterator[tuple[Any, Any]]:
    ray = _installed("ray", "ray", "ray")
    from ray.util import ActorPool

    init_here = not ray.is_initialized()
    if init_here:
        from icl_interp.workers import check_ray_address

        check_ray_address()  # one line within seconds, not minutes of retries
        local_cpus = None if os.environ.get("RAY_ADDRESS") else backend.workers
        ray.init(num_cpus=local_cpus, include_dashboard=False)
    actor = ray.remote(num_cpus=1)(_RayActor)
    threads = 1 if backend.threads is None else backend.threads
    actors: list[Any] = [
        actor.remote(worker, _plugins(), threads) for _ in range(min(backend.workers, len(units)))
    ]
    try:
        pairs = ActorPool(actors).map_unordered(lambda a, unit: a.compute.remote(unit), units)
        yield from _checked(pairs)
    finally:
        for each in actors:
            ray.kill(each)
        if init_here:
            ray.shutdown()


# ----------------------------------------------------------------- SLURM via submitit


def _submitit_job(
    worker: Worker, unit: Any, plugins: tuple[str, ...], threads: int | None
) -> tuple[Any, Any]:
    """One array task: the driver's plugins and threads, then one unit."""
    _prepare(plugins, threads)
    return _call(worker, unit)


def _submitit(worker: Worker, units: list[Any], backend: Backend) -> Iterator[tuple[Any, Any]]:
    submitit = _installed("submitit", "submitit", "slurm")
    as_finished = importlib.import_module("submitit.helpers").as_completed
    assert backend.folder is not None
    executor = submitit.AutoExecutor(folder=backend.folder)
    executor.update_parameters(
        cpus_per_task=backend.threads or 1, slurm_array_parallelism=backend.workers
    )
    n = len(units)
    jobs = executor.map_array(
        _submitit_job, [worker] * n, units, [_plugins()] * n, [backend.threads] * n
    )
    try:
        finished = as_finished(jobs, poll_frequency=SUBMITIT_POLL_SECONDS)
        yield from _checked(job.result() for job in finished)
    finally:
        for job in jobs:
            if not job.done():
                job.cancel(check=False)

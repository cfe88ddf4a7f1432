"""Parallel workers: pools whose processes never outlive their driver, and a Ray address that
is checked within seconds instead of retried for minutes.

``process_pool`` is a ``ProcessPoolExecutor`` whose workers the kernel kills when the driver
dies (Linux ``PR_SET_PDEATHSIG``: a SIGKILLed driver included), and which terminates its
workers when the driver leaves the pool by an exception (Ctrl-C, SIGTERM through the CLI's
handler, a failed run) instead of waiting for their tasks to end. ``check_ray_address`` turns
a ``RAY_ADDRESS`` that names nothing into one line.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from icl_interp.errors import UserError

RAY_CONNECT_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; elsewhere nothing),
    and exit at once if ``parent`` is already gone. A pool initializer."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _start_worker(parent: int, setup: tuple[Callable[..., Any], tuple[Any, ...]] | None) -> None:
    """A pool worker's start: die with the driver, then ``setup`` (a function and its
    arguments; the run kernel's loads the driver's plugins)."""
    die_with_parent(parent)
    if setup is not None:
        function, arguments = setup
        function(*arguments)


@contextlib.contextmanager
def process_pool(
    jobs: int, context: Any, setup: tuple[Callable[..., Any], tuple[Any, ...]] | None = None
) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``jobs`` worker processes that die with the driver, each running ``setup``
    first; leaving the block by an exception terminates them (their unfinished tasks are
    lost, as a rerun resumes them)."""
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=_start_worker,
        initargs=(os.getpid(), setup),
    )
    try:
        yield pool
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())  # no public API
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.terminate()
        for process in processes:
            with contextlib.suppress(Exception):
                process.join(timeout=5)
        raise
    pool.shutdown(wait=True)


def check_ray_address(timeout: float = RAY_CONNECT_SECONDS) -> None:
    """A one-line ``UserError`` within ``timeout`` seconds unless ``RAY_ADDRESS`` (when it
    names a host and port) accepts a connection; Ray itself retries for minutes."""
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not port.isdigit():
        raise UserError(
            f"RAY_ADDRESS={address!r} is not host:port (or ray://host:port); fix or unset it"
        )
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(
            f"cannot reach the Ray cluster at RAY_ADDRESS={address} ({reason}); start it "
            "(ray start --head) or unset RAY_ADDRESS to run on this machine"
        ) from None

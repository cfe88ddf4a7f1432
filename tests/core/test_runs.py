"""The run kernel (``icl_interp.runs``): every backend gives each unit's result once, a worker's
``UserError`` reaches the driver as the same one line, and bad backend settings are refused.
(Each command's files on every backend: tests/lm/test_compare_ray.py, tests/lm/test_adapt.py,
tests/synthetic/test_experiment.py, tests/core/test_plugins.py.)"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest

from icl_interp.errors import UserError
from icl_interp.options import check_backend_options
from icl_interp.runs import Backend, backend_for, map_units

# workers importable in any process: a function from the standard library, and a core check
# that raises a UserError for a unit of 0
SQUARE_ROOT = math.sqrt
REFUSE_ZERO = functools.partial(check_backend_options, "serial", threads=None)


@pytest.mark.parametrize("name", ["serial", "processes"])
def test_every_unit_comes_back_once_with_its_result(name: str, tmp_path: Path) -> None:
    units = [1.0, 4.0, 9.0, 16.0]
    results = dict(map_units(SQUARE_ROOT, units, backend_for(name, 2, None, tmp_path)))
    assert results == {1.0: 1.0, 4.0: 2.0, 9.0: 3.0, 16.0: 4.0}


@pytest.mark.parametrize("name", ["serial", "processes"])
def test_a_workers_user_error_is_the_drivers_one_line(name: str, tmp_path: Path) -> None:
    with pytest.raises(UserError) as error:
        list(map_units(REFUSE_ZERO, [1, 0, 2], backend_for(name, 2, None, tmp_path)))
    assert str(error.value) == "--workers must be >= 1, got 0"


def test_no_units_starts_nothing(tmp_path: Path) -> None:
    assert list(map_units(SQUARE_ROOT, [], Backend("submitit", 2, None, tmp_path))) == []


def test_auto_is_serial_for_one_worker_and_processes_for_more(tmp_path: Path) -> None:
    assert backend_for("auto", 1, None, tmp_path) == Backend(
        "serial", 1, None, tmp_path / ".submitit"
    )
    parallel = backend_for("auto", 3, None, tmp_path)
    assert (parallel.name, parallel.threads) == ("processes", 1), "one torch thread per worker"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (("threads", 2, None), "unknown backend 'threads'"),
        (("auto", 2, None), "unknown backend 'auto'"),
        (("processes", 0, None), "--workers must be >= 1, got 0"),
        (("serial", 1, 0), "--threads must be >= 1, got 0"),
        (("submitit", 1, None), "needs a folder"),
    ],
)
def test_bad_backend_settings_are_one_line(settings: tuple, message: str) -> None:
    with pytest.raises(UserError, match=message):
        Backend(*settings)

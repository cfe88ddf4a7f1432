"""Shared test setup: no hub access, deterministic seeds, small helpers.

Shape annotations (jaxtyping) are checked at run time under pytest via
``--jaxtyping-packages`` in pyproject.toml.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from icl_interp.results import seed_everything  # noqa: E402


@pytest.fixture(autouse=True)
def _seed() -> None:
    seed_everything(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))

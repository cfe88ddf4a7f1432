"""Every tiny architecture x every pretrained-LM command: each cell runs to the end from the
command line (the architecture adapters serve every consumer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from icl_interp.cli import main
from icl_interp.lm.models import TINY_ARCHS
from tests.helpers import SHARED_DATA

needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
DATA = ["--data-dir", str(SHARED_DATA)]


def _argv(command: str, model: str, out: Path) -> list[str]:
    """The smallest run of ``command`` on ``model`` into ``out``."""
    return {
        "layers": ["layers", "--model", model, "--dataset", "mr", "--k", "2", "--n-test", "2",
                   *DATA, "--out", str(out)],
        "compare": ["compare", "--models", model, "--datasets", "mr", "--k", "2", "--n-test", "2",
                    "--methods", "gd", "lcgd", "--lr", "0.01", "--bootstrap", "0",
                    "--heatmap-examples", "1", "--finetune-dtype", "float32", "--no-figures",
                    *DATA, "--out", str(out)],
        "adapt": ["adapt", "--base", model, "--mixture", "sst2", "--k", "2", "--max-len", "128",
                  "--steps", "2", "--warmup", "1", "--val-episodes", "1", "--eval-every", "1",
                  "--params", "lora", *DATA, "--out", str(out)],
        "adapt-table": ["adapt-table", "--preset", "tiny", "--base", model, "--seeds", "0",
                        "--ks", "2", "--steps", "2", "--layer-seeds", "0", *DATA,
                        "--out", str(out)],
    }[command]  # fmt: skip


WRITES = {
    "layers": "layer_accuracy.csv",
    "compare": "metrics.csv",
    "adapt": "adapt_card.json",
    "adapt-table": "report.md",
}


def _cells() -> list[tuple[str, str]]:
    return [(arch, command) for arch in TINY_ARCHS for command in WRITES]


@needs_data
@pytest.mark.parametrize(("arch", "command"), _cells())
def test_every_command_runs_on_every_tiny_architecture(
    arch: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(_argv(command, f"tiny-{arch}", out))
    err = capsys.readouterr().err
    assert code == 0, err
    assert list(out.rglob(WRITES[command])), f"{command} wrote no {WRITES[command]}"

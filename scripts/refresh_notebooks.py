"""Re-run the notebooks from a fresh state and store them with their outputs.

Each notebook runs in its own kernel with ``ICL_INTERP_RESULTS`` unset, so it makes its tiny
results folder in a temporary directory (nothing is written into the checkout); bars are off.
Stored images are re-encoded as 256-colour PNGs execution timestamps and tqdm's ipywidgets warning are dropped, so the files
stay small and their diffs readable. Usage (from the repository root, ~1 min on 2 cores):

    PYTHONPATH=. .venv/bin/python scripts/refresh_notebooks.py [notebooks/NAME.ipynb ...]
"""

from __future__ import annotations

import base64
import io
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _small_png(data: str) -> str:
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    buffer = io.BytesIO()
    image.convert("RGB").quantize(colors=256).save(buffer, format="PNG", optimize=True)
    smaller = base64.b64encode(buffer.getvalue()).decode("ascii")
    return smaller if len(smaller) < len(data) else data


def refresh(path: Path) -> int:
    notebook = nbformat.read(path, as_version=4)
    os.environ.pop("ICL_INTERP_RESULTS", None)
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend stores the figures
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if "outputs" in cell:  # tqdm.auto's warning that ipywidgets is missing: noise here
            cell.outputs = [o for o in cell.outputs if "TqdmWarning" not in o.get("text", "")]
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                data["image/png"] = _small_png(data["image/png"])
    nbformat.write(notebook, path)
    return path.stat().st_size


def main(argv: list[str]) -> int:
    paths = [Path(arg) for arg in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        print(f"{path.name}: {refresh(path.resolve()) / 1024:.0f} KiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

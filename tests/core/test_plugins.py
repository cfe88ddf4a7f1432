"""``--plugins``: a user's registrations reach every worker of every backend, are recorded in
the result folder, and a plugin that cannot load is a one-line error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from icl_interp import plugins
from icl_interp.cli import main
from icl_interp.lm.metrics import METRICS
from icl_interp.masks import MASKS

PLUGIN = '''
"""A user's plugin: one metric and one mask kind."""
from icl_interp.lm.metrics import register_metric
from icl_interp.masks import MaskKind, register_mask


@register_metric("plugin_norm_ratio", label="|h ICL| / |h ZSL|", uses=("zsl", "icl", "ft"))
def ratio(c):
    return (c.icl.attn_out.norm(dim=-1) / c.zsl.attn_out.norm(dim=-1)).mean(dim=0)


def hidden(q, k, n_prefix):
    return (k <= q) & ((q < n_prefix) | (k == 0) | (k >= n_prefix))


register_mask(MaskKind("plugin_hidden", "demonstrations hidden", "PluginLM", hidden))
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The plugin file; afterwards its registrations and the loaded list are undone."""
    path = tmp_path / "my_plugin.py"
    path.write_text(PLUGIN)
    monkeypatch.setattr(plugins, "_LOADED", {})
    yield str(path)
    for registry, name in ((METRICS, "plugin_norm_ratio"), (MASKS, "plugin_hidden")):
        if name in registry.names():
            registry.remove(name)


def test_a_plugin_mask_kind_reaches_synthetic_process_workers(plugin: str, tmp_path: Path) -> None:
    out = tmp_path / "synthetic"
    argv = ["synthetic", "--preset", "tiny", "--tasks", "linear", "--masks", "plugin_hidden",
            "--workers", "2", "--threads", "1", "--plugins", plugin, "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "PluginLM-SL" in (out / "table1.md").read_text()
    config = (out / "config.json").read_text()
    assert "my_plugin.py" in config and "sha256:" in config, "the plugin is part of the identity"


@pytest.mark.parametrize("backend", ["processes", "ray", "submitit"])
def test_a_plugin_metric_and_mask_reach_every_backends_workers(
    plugin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    if backend != "processes":
        pytest.importorskip(backend)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "compare"
    argv = ["compare", "--models", "tiny-gemma3", "--datasets", "mr", "--seeds", "0", "1",
            "--n-test", "2", "--k", "2", "--methods", "gd", "--masks", "plugin_hidden",
            "--metrics", "plugin_norm_ratio", "simaou", "--lr", "0.05", "--bootstrap", "0",
            "--heatmap-examples", "0", "--source", "package", "--finetune-dtype", "float32",
            "--backend", backend, "--workers", "2", "--no-figures", "--plugins", plugin,
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    table = pd.read_csv(out / "metrics.csv")
    assert set(table["mask"]) == {"plugin_hidden"} and set(table["seed"]) == {0, 1}
    assert "plugin_norm_ratio" in set(table["metric"])


def test_a_plugin_that_cannot_load_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plugins, "_LOADED", {})
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    for plugin, message in (
        (str(broken), "plugin '" + str(broken) + "' cannot be loaded: RuntimeError: boom"),
        ("no_such_module_xyz", "cannot be loaded: ModuleNotFoundError"),
        (str(tmp_path / "absent.py"), "does not exist"),
    ):
        assert main(["lsa", "--plugins", plugin, "--out", str(tmp_path / "lsa")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "lsa").exists(), "nothing is written"

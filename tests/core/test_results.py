"""Result folders: ownership (command, settings, inputs), nothing written before claim, file modes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from icl_interp.errors import UserError
from icl_interp.results import (
    ResultFolder,
    file_fingerprint,
    write_csv,
    write_figure,
    write_text,
)


def folder(path: Path, **overrides: object) -> ResultFolder:
    options: dict = {
        "command": "lsa",
        "settings": {"seed": 0, "n": 3, "threads": 1},
        "inputs": {"data": "sha256:aa"},
        "ignore": frozenset({"threads"}),
    }
    options.update(overrides)
    return ResultFolder(path, **options)  # type: ignore[arg-type]


def test_check_writes_nothing_and_claim_records_owner(tmp_path: Path) -> None:
    out = tmp_path / "run"
    folder(out).check()
    assert not out.exists()
    folder(out).claim()
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["command"] == "lsa" and recorded["config"]["seed"] == 0
    assert recorded["inputs"] == {"data": "sha256:aa"}
    folder(out, settings={"seed": 0, "n": 3, "threads": 4}).check()  # ignored key


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"command": "synthetic"}, "holds results of icl-interp lsa"),
        ({"settings": {"seed": 1, "n": 3}}, "seed: 0 -> 1"),
        ({"inputs": {"data": "sha256:bb"}}, "other inputs (data:"),
    ],
)
def test_other_command_settings_or_inputs_are_refused(
    tmp_path: Path, overrides: dict, message: str
) -> None:
    folder(tmp_path / "run").claim()
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        folder(tmp_path / "run", **overrides).check()


def test_unowned_or_corrupt_or_file_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and was not made by"):
        folder(tmp_path / "other").check()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        folder(tmp_path / "bad").check()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        folder(tmp_path / "file").check()


def test_may_differ_keys_are_not_compared(tmp_path: Path) -> None:
    folder(tmp_path / "run", settings={"seeds": [0]}, may_differ=frozenset({"seeds"})).claim()
    folder(tmp_path / "run", settings={"seeds": [0, 1]}, may_differ=frozenset({"seeds"})).check()


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


def test_file_fingerprint_follows_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("same")
    b.write_text("same")
    assert file_fingerprint(a) == file_fingerprint(b)
    b.write_text("other")
    assert file_fingerprint(a) != file_fingerprint(b)


def test_a_figure_stem_keeps_its_dots(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = plt.figure()
    written = write_figure(tmp_path / "layer_curves__qwen2.5-coder-0.5b", fig)
    plt.close(fig)
    names = [p.name for p in written]
    assert names == ["layer_curves__qwen2.5-coder-0.5b.png", "layer_curves__qwen2.5-coder-0.5b.pdf"]
    assert all(p.exists() for p in written)


def test_a_gzip_csv_is_byte_identical_and_reads_back(tmp_path: Path) -> None:
    table = pd.DataFrame({"metric": ["simaou", "simam"], "value": [0.125, float("nan")]})
    first = write_csv(tmp_path / "a" / "t.csv.gz", table).read_bytes()
    second = write_csv(tmp_path / "b" / "t.csv.gz", table).read_bytes()
    assert first == second and first[:2] == b"\x1f\x8b"  # gzip, no time or name inside
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "t.csv.gz"), table)
    assert (write_csv(tmp_path / "t.csv", table).read_text()).startswith(
        "metric,value\nsimaou,0.125\n"
    )


def test_refuse_changed_names_each_difference_in_one_line() -> None:
    import pytest

    from icl_interp.errors import UserError
    from icl_interp.results import refuse_changed

    refuse_changed(
        "x was made otherwise", {"a": 1, "t": 2}, {"a": 1, "t": 3}, "fix", skip=frozenset({"t"})
    )
    with pytest.raises(UserError) as error:
        refuse_changed("x was made otherwise", {"a": 1, "b": [1]}, {"a": 2, "c": "n"}, "fix it")
    assert str(error.value) == (
        'x was made otherwise (a: 1 -> 2; b: [1] -> null; c: null -> "n"); fix it'
    )

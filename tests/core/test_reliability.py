"""Bad inputs and hostile situations (issue 10): each is one line on stderr, the right exit code,
and earlier results left as they were. Tiny sizes and tiny models only.

Cases kept here, by class: mistyped options (reported before torch is imported), repeated list
values, seeds out of range, Ctrl-C during start-up and during a run, ``--out`` that is not this
command's folder (another command's, a file, under a file, unowned, corrupt config.json, other
settings), a full or read-only disk, byte-identical reruns, NaN in CSVs, things passed as a model
that are not one (fake .gguf, data folder, corrupt config, truncated checkpoint), unavailable
devices, finetuning divergence, data files in the wrong encoding or with an empty class, and
progress bars off a terminal.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import icl_interp.cli as cli
from icl_interp.cli import main
from icl_interp.errors import UserError
from icl_interp.options import MAX_SEED, Distinct, seed
from icl_interp.results import write_csv

REPO = Path(__file__).resolve().parents[2]
TINY_LSA = [
    "--d", "4", "--n-context", "10", "--n-queries", "5", "--n-sequences", "3",
    "--n-layers", "6", "--max-context", "20", "--mu-x", "0", "2", "--eta", "0.5",
]  # fmt: skip


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``icl-interp argv`` in this process: (exit code, stderr); parser errors exit via SystemExit."""
    try:
        code = main(list(argv))
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    return code, capsys.readouterr().err


def assert_one_line(err: str, *fragments: str) -> None:
    assert err.count("\n") == 1 and err.startswith("icl-interp"), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def lsa_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny ``lsa`` result folder (figures off), shared read-only by the tests."""
    out = tmp_path_factory.mktemp("lsa") / "done"
    assert main(["lsa", *TINY_LSA, "--no-figures", "--out", str(out)]) == 0
    return out


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        *(
            ([command, "--bogus", "--out", "x"], "unrecognized arguments: --bogus")
            for command in ("lsa", "synthetic", "layers", "compare", "adapt", "adapt-table")
        ),
        (["lsa", "--d", "0"], "d must be"),
    ],
    ids=["lsa", "synthetic", "layers", "compare", "adapt", "adapt-table", "bad-value"],
)
def test_mistakes_are_reported_before_torch_is_imported(argv: list[str], message: str) -> None:
    code = (
        "import sys\nfrom icl_interp.cli import main\n"
        f"try:\n    rc = main({argv!r})\n"
        "except SystemExit as exit_info:\n    rc = exit_info.code\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_repeated_list_values_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "lsa", "--mu-x", "0", "1", "0")
    assert code == 2
    assert_one_line(err, "--mu-x: repeated value(s) 0.0")
    parser = cli.OneLineParser(prog="icl-interp compare")
    parser.add_argument("--seeds", nargs="+", type=seed, action=Distinct, default=[0])
    assert parser.parse_args(["--seeds", "2", "1"]).seeds == [2, 1]
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--seeds", "0", "0"])
    assert exit_info.value.code == 2
    assert_one_line(capsys.readouterr().err, "--seeds: repeated value(s) 0")


@pytest.mark.parametrize("value", ["-1", str(MAX_SEED + 1), "abc", "1.5"])
def test_seed_out_of_range_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    code, err = run_cli(capsys, "lsa", "--seed", value)
    assert code == 2
    assert_one_line(err, "--seed")
    assert seed("0") == 0 and seed(str(MAX_SEED)) == MAX_SEED
    with pytest.raises(argparse.ArgumentTypeError):
        seed(value)


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_start_up_is_one_line_exit_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(name: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.importlib, "import_module", interrupted)
    code, err = run_cli(capsys, "lsa", "--no-figures")
    assert code == 130
    assert_one_line(err, "interrupted during start-up")


def test_ctrl_c_during_a_run_keeps_the_earlier_result(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, lsa_folder: Path
) -> None:
    import icl_interp.lsa.experiment as experiment

    before = snapshot(lsa_folder)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "write_csv", interrupted)
    code, err = run_cli(capsys, "lsa", *TINY_LSA, "--no-figures", "--out", str(lsa_folder))
    assert code == 130
    assert_one_line(err, "interrupted; rerun the same command")
    assert snapshot(lsa_folder) == before


def test_real_sigint_while_torch_imports_is_one_line_exit_130(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "icl_interp", "lsa", "--out", str(tmp_path / "lsa")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
        # a shell's background job (`cmd &`) ignores SIGINT and children inherit that: restore
        # the default so Python installs its KeyboardInterrupt handler, as in a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Ctrl-C until it stops: a library's import may swallow one interrupt on a busy machine
    err = ""
    for _ in range(200):
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            continue
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "interrupted" in err, err


# --------------------------------------------------------------------------- result folders


def test_another_commands_folder_is_refused_and_left_untouched(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "compare_run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"command": "compare", "config": {}}))
    (out / "metrics.csv").write_text("model,value\ntiny,1\n")
    before = snapshot(out)
    code, err = run_cli(capsys, "lsa", *TINY_LSA, "--out", str(out))
    assert code == 2
    assert_one_line(err, "holds results of icl-interp compare")
    assert snapshot(out) == before


def _a_file(root: Path) -> Path:
    (root / "out").write_text("x")
    return root / "out"


def _under_a_file(root: Path) -> Path:
    (root / "f").write_text("x")
    return root / "f" / "out"


def _unowned_folder(root: Path) -> Path:
    (root / "out").mkdir()
    (root / "out" / "notes.txt").write_text("mine")
    return root / "out"


def _corrupt_config_json(root: Path) -> Path:
    (root / "out").mkdir()
    (root / "out" / "config.json").write_text("{corrupt")
    return root / "out"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_a_file, "is a file, not a folder"),
        (_under_a_file, "is a file, not a folder"),
        (_unowned_folder, "not made by icl-interp lsa"),
        (_corrupt_config_json, "config.json is unreadable or corrupt"),
    ],
    ids=["out-is-a-file", "out-under-a-file", "unowned-folder", "corrupt-config"],
)
def test_out_that_is_not_this_commands_folder_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make, message: str
) -> None:
    out = make(tmp_path)
    before = snapshot(tmp_path)
    code, err = run_cli(capsys, "lsa", *TINY_LSA, "--out", str(out))
    assert code == 2
    assert_one_line(err, message)
    assert snapshot(tmp_path) == before


def test_other_settings_are_refused_before_computing(
    capsys: pytest.CaptureFixture[str], lsa_folder: Path
) -> None:
    before = snapshot(lsa_folder)
    code, err = run_cli(capsys, "lsa", *TINY_LSA, "--seed", "1", "--out", str(lsa_folder))
    assert code == 2
    assert_one_line(err, "other settings (seed: 0 -> 1)")
    assert snapshot(lsa_folder) == before


@pytest.mark.parametrize(
    ("code", "hint"), [(errno.ENOSPC, "free space"), (errno.EROFS, "pass another --out")]
)
def test_full_or_read_only_disk_is_one_line_and_keeps_earlier_results(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    lsa_folder: Path,
    code: int,
    hint: str,
) -> None:
    import icl_interp.results as results

    before = snapshot(lsa_folder)

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(results.os, "replace", failing_replace)
    exit_code, err = run_cli(capsys, "lsa", *TINY_LSA, "--no-figures", "--out", str(lsa_folder))
    assert exit_code == 2
    assert_one_line(err, f"could not write {lsa_folder}", os.strerror(code), hint)
    assert snapshot(lsa_folder) == before, "no temporary files left, nothing replaced"


def test_lsa_reruns_are_byte_identical_including_figures(tmp_path: Path) -> None:
    def lsa(out: Path) -> None:
        subprocess.run(
            [sys.executable, "-m", "icl_interp", "lsa", *TINY_LSA, "--out", str(out)],
            check=True,
            capture_output=True,
            env=subprocess_env(),
            cwd=tmp_path,
        )

    lsa(Path("a"))
    first = snapshot(tmp_path / "a")
    assert {"figure2.png", "figure2.pdf", "figure4.png", "figure4.pdf"} <= set(first)
    for path in (tmp_path / "a").iterdir():
        path.unlink()
    lsa(Path("a"))
    assert snapshot(tmp_path / "a") == first


def test_nan_is_written_as_nan_not_an_empty_cell(tmp_path: Path) -> None:
    write_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1.0, math.nan], "b": ["x", None]}))
    assert (tmp_path / "t.csv").read_text() == "a,b\n1,x\nnan,nan\n"
    assert pd.read_csv(tmp_path / "t.csv")["a"].isna().tolist() == [False, True]


@pytest.mark.parametrize("kind", ["csv", "torch", "garbage"])
def test_corrupt_unit_files_are_named(tmp_path: Path, kind: str) -> None:
    from icl_interp.results import read_csv, read_torch, write_torch

    if kind == "csv":
        path = tmp_path / "unit.csv"
        path.write_bytes(b'a,b\n1,"unterminated\n')
        read = read_csv
    elif kind == "torch":
        path = tmp_path / "unit.pt"
        write_torch(path, {"w": torch.zeros(100)})
        path.write_bytes(path.read_bytes()[:200])
        read = read_torch
    else:
        path = tmp_path / "unit.pt"
        path.write_text("garbage text")
        read = read_torch
    with pytest.raises(UserError, match=f"{path} is corrupt or unreadable") as error:
        read(path)
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- models


def _fake_gguf(root: Path) -> Path:
    (root / "model.gguf").write_text("not a gguf file")
    return root / "model.gguf"


def _data_folder(root: Path) -> Path:
    (root / "sst2").mkdir()
    (root / "sst2" / "train.txt").write_text("1 good film\n0 bad film\n")
    return root / "sst2"


def _corrupt_config(root: Path) -> Path:
    (root / "model").mkdir()
    (root / "model" / "config.json").write_text("{corrupt")
    return root / "model"


def _truncated_checkpoint(root: Path) -> Path:
    from icl_interp.lm.models import tiny_hf_model

    hf_model, tokenizer = tiny_hf_model("llama")
    hf_model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    weights = root / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return root / "model"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_fake_gguf, "could not load GGUF file"),
        (_data_folder, "is not a model folder"),
        (_corrupt_config, "could not load model"),
        (_truncated_checkpoint, "could not load model"),
    ],
    ids=["fake-gguf", "data-folder", "corrupt-config", "truncated-checkpoint"],
)
def test_things_that_are_not_models_are_one_line_errors(tmp_path: Path, make, message: str) -> None:
    from icl_interp.lm.models import load_model

    path = make(tmp_path)
    with pytest.raises(UserError, match=message) as error:
        load_model(str(path))
    assert "\n" not in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize(
    ("device", "message"),
    [("cuda", "is not available here"), ("cuda:99", "CUDA"), ("gpu", "unknown device")],
)
def test_unavailable_device_is_one_line(device: str, message: str) -> None:
    from icl_interp.lm.models import check_device, load_model

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(UserError, match=message) as error:
        load_model("tiny-gemma3", device=device)
    assert "\n" not in str(error.value)
    assert check_device("cpu") == torch.device("cpu")


def test_offline_hint_names_no_cli_option_that_does_not_exist() -> None:
    from icl_interp.lm.models import load_model

    with pytest.raises(UserError, match="allow_download=True") as error:
        load_model("nobody/not-a-model-xyz")
    assert "--allow-download" not in str(error.value)


# --------------------------------------------------------------------------- finetuning


@pytest.mark.parametrize("method", ["gd", "lcgd"])
def test_exploding_lr_stops_finetuning_naming_step_and_layer(method: str) -> None:
    from icl_interp.lm.finetune import finetune
    from icl_interp.lm.models import tiny_random_model

    model = tiny_random_model("gemma3")
    bos = model.tokenizer.bos_token_id
    demos = [torch.tensor([bos, 7, 8, 9, 10]), torch.tensor([bos, 11, 12, 13])]
    with pytest.raises(UserError) as error:
        finetune(model, demos, method=method, lr=1e30)
    message = str(error.value)
    assert "\n" not in message
    for fragment in ("step 1 (demonstration 0)", "layer 0", "exploded", "lower learning rate"):
        assert fragment in message, message
    finetune(model, demos, method=method, lr=0.1)  # an ordinary lr does not trip it


# --------------------------------------------------------------------------- data files


def test_utf16_with_a_byte_order_mark_is_decoded(tmp_path: Path) -> None:
    from icl_interp.lm.data.loaders import int_label, read_label_prefixed

    path = tmp_path / "train.txt"
    path.write_bytes("1 café au lait\n0 bad\n".encode("utf-16"))
    texts = [ex.fields["text"] for ex in read_label_prefixed(path, int_label(2))]
    assert texts == ["café au lait", "bad"]


@pytest.mark.parametrize(
    "data",
    ["1 good film\n".encode("utf-16-le"), b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"],
    ids=["utf16-without-bom", "binary"],
)
def test_nul_bytes_without_a_byte_order_mark_name_the_file(tmp_path: Path, data: bytes) -> None:
    from icl_interp.lm.data.loaders import read_sentences

    path = tmp_path / "rt-polarity.pos"
    path.write_bytes(data)
    with pytest.raises(UserError, match=f"{path}: NUL byte at offset .*UTF-8"):
        read_sentences(path, label=1)


def test_an_empty_class_is_an_error_naming_file_and_class(tmp_path: Path) -> None:
    from icl_interp.lm.data import load_examples

    (tmp_path / "mr").mkdir()
    (tmp_path / "mr" / "rt-polarity.neg").write_text("a bad film\nawful\n")
    (tmp_path / "mr" / "rt-polarity.pos").write_text("\n  \n")
    with pytest.raises(UserError, match=r"rt-polarity\.pos: no sentences \(empty class file"):
        load_examples("mr", "test", tmp_path)
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.txt").write_text("1 good\n1 great\n")
    with pytest.raises(UserError, match=r"sst2 train split .* no examples of class 'negative'"):
        load_examples("sst2", "train", tmp_path)


# --------------------------------------------------------------------------- progress bars


def test_progress_bars_write_nothing_off_a_terminal() -> None:
    code = (
        "from icl_interp.progress import progress\n"
        "for _ in progress(range(3), desc='outer'):\n"
        "    for _ in progress(range(50), desc='inner', leave=False): pass\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_progress_bars_are_drawn_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from icl_interp import progress as progress_module

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(progress_module.sys, "stderr", Terminal())
    assert progress_module.bars_wanted()
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not progress_module.bars_wanted()

"""Hostile situations, round 3 (issue 25): one writer per folder, identity by content, validate
before claiming, adaptation that watches itself, no hangs, validated lr tables, statistics and
masks that guard themselves, clean streams, range-checked API inputs, no orphaned workers.
Tiny sizes and tiny models only; each case is one line on stderr (or a correct result) with the
earlier results left as they were.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.results import (
    LOCK_NAME,
    ResultFolder,
    content_fingerprint,
    file_stem,
    folder_locked,
    lock_folder,
    release_locks,
)
from tests.core.test_reliability import TINY_LSA, assert_one_line, run_cli, subprocess_env
from tests.helpers import SHARED_DATA, tiny_table

needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")


def one_line(error: pytest.ExceptionInfo[UserError], *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# --------------------------------------------------------------------------- 1. one writer


HOLDER = """
import sys, time
from icl_interp.results import lock_folder
for line in sys.stdin:
    folder, name = line.rstrip("\\n").split("\\t")
    lock_folder(folder, name)
    print("locked", flush=True)
"""


class Holder:
    """Another process that takes folder locks on request and holds them until it ends."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )

    def hold(self, folder: Path, name: str = LOCK_NAME) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{folder}\t{name}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "locked\n"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def holder() -> Iterator[Holder]:
    other = Holder()
    yield other
    other.close()


def _cli_args(command: str, out: str) -> list[str]:
    return {
        "lsa": ["lsa", *TINY_LSA, "--no-figures", "--out", out],
        "synthetic": ["synthetic", "--preset", "tiny", "--tasks", "linear", "--out", out],
        "layers": ["layers", "--model", "tiny-gemma3", "--dataset", "sst2", "--out", out],
        "compare": ["compare", "--models", "tiny-gemma3", "--datasets", "mr", "--out", out],
        "adapt": ["adapt", "--base", "tiny-gemma3", "--mixture", "sst2", "--out", out],
        "adapt-table": ["adapt-table", "--preset", "tiny", "--out", out],
    }[command]


@pytest.mark.parametrize(
    "command", ["lsa", "synthetic", "layers", "compare", "adapt", "adapt-table"]
)
def test_a_second_run_on_a_folder_in_use_refuses_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, holder: Holder, command: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    name = LOCK_NAME
    holder.hold(out, name)
    code, err = run_cli(capsys, *_cli_args(command, str(out)))
    assert code == 2, err
    assert_one_line(err, "is in use by another run (process", "pass another --out")
    assert sorted(p.name for p in out.iterdir()) == [name], "nothing written"


def test_a_folder_locked_while_results_are_written_refuses_a_claim(
    tmp_path: Path, holder: Holder
) -> None:
    """A new folder is locked at claim: a run that validated first and claims second refuses."""
    folder = ResultFolder(tmp_path / "new", "lsa", {"seed": 0})
    folder.check()  # nothing to lock yet: the folder does not exist
    assert not (tmp_path / "new").exists()
    holder.hold(tmp_path / "new")
    with pytest.raises(UserError) as error:
        folder.claim()
    one_line(error, "in use by another run")
    assert not (tmp_path / "new" / "config.json").exists()


def test_the_lock_is_reentrant_released_and_cleaned_up(tmp_path: Path) -> None:
    out = tmp_path / "fresh"
    lock_folder(out)
    lock_folder(out)  # the same process again: nothing happens
    assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert folder_locked(out)
    release_locks(out)
    assert not out.exists(), "a folder made only for the lock is removed with it"
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "result.csv").write_text("a\n1\n")
    lock_folder(kept)
    release_locks(kept)
    assert sorted(p.name for p in kept.iterdir()) == ["result.csv"]


def test_a_deleted_folder_is_locked_afresh(tmp_path: Path) -> None:
    out = tmp_path / "gone"
    lock_folder(out)
    shutil.rmtree(out)
    lock_folder(out)
    assert (out / LOCK_NAME).exists()
    release_locks(out)


def test_a_stale_lock_file_of_a_killed_run_does_not_block(tmp_path: Path) -> None:
    out = tmp_path / "stale"
    out.mkdir()
    (out / LOCK_NAME).write_text("99999999\n")  # a SIGKILLed run leaves its file, not its lock
    folder = ResultFolder(out, "lsa", {"seed": 0})
    folder.claim()
    assert json.loads((out / "config.json").read_text())["command"] == "lsa"
    release_locks(out)


def test_a_worker_given_the_folder_writes_under_its_drivers_lock(tmp_path: Path) -> None:
    folder = ResultFolder(tmp_path / "w", "compare", {"seed": 0}, owner_pid=os.getpid() + 1)
    folder.claim()  # another pid owns it: no lock taken here
    assert not (tmp_path / "w" / LOCK_NAME).exists()
    assert (tmp_path / "w" / "config.json").exists()


def test_the_lock_file_does_not_make_a_folder_foreign(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    (out / LOCK_NAME).write_text("")
    ResultFolder(out, "lsa", {"seed": 0}).check()
    release_locks(out)


def test_a_folder_that_cannot_hold_a_lock_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError) as error:
        lock_folder(tmp_path / "file" / "out")  # under a file: no folder can be made
    one_line(error, "could not lock", "pass another --out")


def test_a_finished_cli_run_leaves_no_lock(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    out = tmp_path / "lsa"
    code, err = run_cli(capsys, *_cli_args("lsa", str(out)))
    assert code == 0, err
    assert not (out / LOCK_NAME).exists() and not folder_locked(out)


# --------------------------------------------------------------------------- 2. identity


@pytest.fixture
def fingerprint_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import icl_interp.results as results

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(results, "_FINGERPRINTS", {})
    return tmp_path / "cache" / "icl_interp" / "fingerprints.json"


def _rewrite_same_size(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_content_fingerprint_changes_with_content_not_size(fingerprint_cache, tmp_path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 4096)
    before = content_fingerprint(path)
    _rewrite_same_size(path)
    assert content_fingerprint(path) != before
    assert fingerprint_cache.exists()


def test_content_fingerprint_is_computed_once(
    fingerprint_cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import icl_interp.results as results

    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 1000)
    calls = []
    original = results.file_fingerprint
    monkeypatch.setattr(results, "file_fingerprint", lambda p: calls.append(p) or original(p))
    first = content_fingerprint(path)
    monkeypatch.setattr(results, "_FINGERPRINTS", {})  # a new process: the disk cache serves
    assert content_fingerprint(path) == first
    assert len(calls) == 1


@pytest.mark.parametrize("cache_text", ["{corrupt", "[1, 2]", '{"k": 5}'])
def test_a_corrupt_fingerprint_cache_is_ignored(fingerprint_cache, tmp_path, cache_text) -> None:
    fingerprint_cache.parent.mkdir(parents=True)
    fingerprint_cache.write_text(cache_text)
    path = tmp_path / "f.bin"
    path.write_bytes(b"123")
    assert content_fingerprint(path).startswith("sha256:")


def test_an_unwritable_fingerprint_cache_still_fingerprints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import icl_interp.results as results

    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # a file, not a folder
    monkeypatch.setattr(results, "_FINGERPRINTS", {})
    assert content_fingerprint(tmp_path / "file").startswith("sha256:")


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from icl_interp.lm.models import tiny_hf_model

    folder = tmp_path_factory.mktemp("model") / "tiny"
    hf_model, tokenizer = tiny_hf_model("llama")
    hf_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_model_identity_sees_new_weights_of_the_same_size(
    fingerprint_cache, tiny_model_folder: Path, tmp_path: Path
) -> None:
    from icl_interp.lm.models import model_identity

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_folder, folder)
    before = model_identity(str(folder))
    size = (folder / "model.safetensors").stat().st_size
    _rewrite_same_size(folder / "model.safetensors")
    assert (folder / "model.safetensors").stat().st_size == size
    assert model_identity(str(folder)) != before


def test_model_identity_survives_a_move_and_ignores_the_lock(
    fingerprint_cache, tiny_model_folder: Path, tmp_path: Path
) -> None:
    from icl_interp.lm.models import model_identity

    moved = tmp_path / "elsewhere" / "tiny"
    shutil.copytree(tiny_model_folder, moved)
    (moved / LOCK_NAME).write_text("123\n")
    assert model_identity(str(moved)) == model_identity(str(tiny_model_folder))


def test_model_identity_of_a_single_file_is_by_content(fingerprint_cache, tmp_path) -> None:
    from icl_interp.lm.models import model_identity

    a, b = tmp_path / "a" / "m.gguf", tmp_path / "b" / "m.gguf"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_bytes(b"GGUF" + b"\0" * 60)
    b.write_bytes(b"GGUF" + b"\1" * 60)
    assert model_identity(str(a)) != model_identity(str(b))
    shutil.copy(a, b)
    assert model_identity(str(a)) == model_identity(str(b))


COLLIDING = [
    ("org/model", "org_model"),
    ("my model", "my_model"),
    ("m:v1", "m_v1"),
    ("café", "caf_"),
    ("a/b/c", "a_b_c"),
    ("runs/x", "runs\\x"),
    ("model?", "model*"),
    ("./m", "._m"),
]


@pytest.mark.parametrize(("first", "second"), COLLIDING)
def test_two_model_names_never_share_a_file_stem(first: str, second: str) -> None:
    from icl_interp.lm.compare import unit_stem

    assert file_stem(first) != file_stem(second)
    assert unit_stem(first, "mr", 0) != unit_stem(second, "mr", 0)
    for stem in (file_stem(first), file_stem(second)):
        assert "/" not in stem and "\\" not in stem and not stem.startswith(".")


@pytest.mark.parametrize("name", ["gemma-3-270m", "tiny-gemma3", "qwen2.5-coder-0.5b"])
def test_plain_model_names_keep_their_stem(name: str) -> None:
    assert file_stem(name) == name


def test_a_moved_lr_table_resumes_by_content(tmp_path: Path) -> None:
    from icl_interp.lm.compare import result_folder
    from icl_interp.lm.compare_config import CompareConfig

    table = "model,data,finetuning,lr,val_accuracy,seeds,grid\nm,mr,gd,0.001,0.5,0,0.001\n"
    first, moved = tmp_path / "a" / "lrs.csv", tmp_path / "b" / "lrs.csv"
    for path in (first, moved):
        path.parent.mkdir()
        path.write_text(table)
    out = tmp_path / "out"
    result_folder(out, CompareConfig(lr_table=str(first))).claim()
    result_folder(out, CompareConfig(lr_table=str(moved))).check()  # no "other settings"
    release_locks(out)


# --------------------------------------------------------------------------- 3. validate first


@needs_data
def test_a_parameter_group_the_architecture_lacks_is_refused_before_claiming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from icl_interp.lm.adapt import training
    from icl_interp.lm.adapt.table import run_table

    # an architecture whose adapter finds no q/k/v/o projections to put LoRA on
    monkeypatch.setattr(training, "projection_modules", lambda model: [])
    config = tiny_table({"base": "tiny-gpt2", "params": "lora"})
    out = tmp_path / "table"
    with pytest.raises(UserError) as error:
        run_table(config, out)
    one_line(error, "--params lora: no q/k/v/o projections", "use --params blocks or attn")
    assert not (out / "config.json").exists()
    release_locks()


def test_every_parameter_group_exists_on_every_tiny_architecture() -> None:
    from icl_interp.lm.adapt.config import PARAM_CHOICES
    from icl_interp.lm.adapt.training import check_params
    from icl_interp.lm.models import TINY_ARCHS, tiny_random_model

    for arch in TINY_ARCHS:  # GPT-2 (blocks transformer.h.*, fused c_attn) included
        model = tiny_random_model(arch)
        for params in PARAM_CHOICES:
            check_params(model, params)


@needs_data
@pytest.mark.parametrize("has_results", [False, True])
def test_a_failure_after_claiming_leaves_the_folder_claimable_by_the_corrected_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, has_results: bool
) -> None:
    import icl_interp.lm.adapt.table as adapt_table

    config = tiny_table()
    out = tmp_path / "table"

    def failing(adapt_config) -> None:
        if has_results:
            Path(adapt_config.out).mkdir(parents=True)
            (Path(adapt_config.out) / "adapt_card.json").write_text("{}")
        raise UserError("adaptation diverged at step 3")

    monkeypatch.setattr(adapt_table, "adapt", failing)
    with pytest.raises(UserError, match="diverged"):
        adapt_table.run_table(config, out)
    release_locks()
    assert (out / "config.json").exists() == has_results
    if not has_results:  # the corrected command (another lr) is not refused
        adapt_table.result_folder(out, tiny_table({"lr": config.training.lr / 10})).check()
        release_locks()


# --------------------------------------------------------------------------- 4. adaptation


def _adapt_config(out: Path, **overrides):
    from icl_interp.lm.adapt.config import AdaptConfig

    values = dict(
        base="tiny-gemma3",
        objective="causal",
        mixture=("sst2",),
        k=2,
        queries=2,
        max_len=96,
        steps=6,
        lr=1e-3,
        warmup=1,
        val_episodes=0,
        checkpoint_every=2,
        params="blocks",
        data_dir=str(SHARED_DATA),
        progress=False,
        out=str(out),
    )
    values.update(overrides)
    return AdaptConfig(**values)


def _uniform_loss(model, hf_model, episode, objective):
    vocab = hf_model.config.vocab_size
    anchor = sum(p.sum() for p in hf_model.parameters() if p.requires_grad)
    return torch.log(torch.tensor(float(vocab))) + 0.0 * anchor


def _flat_loss(model, hf_model, episode, objective):
    anchor = sum(p.sum() for p in hf_model.parameters() if p.requires_grad)
    return torch.tensor(2.0) + 0.0 * anchor


def _nan_loss(model, hf_model, episode, objective):
    return torch.tensor(float("nan"), requires_grad=True)


def _inf_loss(model, hf_model, episode, objective):
    return torch.tensor(float("inf"), requires_grad=True)


def _nan_gradient(model, hf_model, episode, objective):
    anchor = sum(p.sum() for p in hf_model.parameters() if p.requires_grad)
    return torch.sqrt((anchor - anchor.detach()) ** 2) + 1.0  # finite loss, 0/0 gradient


@needs_data
@pytest.mark.parametrize(
    ("loss", "fragments"),
    [
        (_uniform_loss, ["collapsed: loss frozen at ln(vocabulary)", "since step 1", "step 3"]),
        (_flat_loss, ["collapsed: gradient norm below", "since step 1", "step 3"]),
        (_nan_loss, ["diverged: non-finite loss at step 1"]),
        (_inf_loss, ["diverged: non-finite loss at step 1"]),
        (_nan_gradient, ["diverged: non-finite gradient at step 1"]),
    ],
    ids=["uniform-output", "vanishing-gradient", "nan-loss", "inf-loss", "nan-gradient"],
)
def test_adaptation_stops_on_collapse_naming_the_step_and_can_be_corrected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loss, fragments: list[str]
) -> None:
    import icl_interp.lm.adapt.run as adapt_module

    out = tmp_path / "adapted"
    monkeypatch.setattr(adapt_module, "episode_loss", loss)
    with pytest.raises(UserError) as error:
        adapt_module.adapt(_adapt_config(out, checkpoint_every=1))
    one_line(error, *fragments, "lr=0.001")
    assert not (out / "checkpoint.pt").exists(), "a collapsed run's checkpoint is removed"
    monkeypatch.undo()
    adapt_module._check_out(out, _adapt_config(out, lr=1e-4))  # the corrected command runs


def test_validation_back_at_chance_after_being_above_it_stops_the_run() -> None:
    from icl_interp.lm.adapt.config import AdaptConfig
    from icl_interp.lm.adapt.run import Collapsed, _Watch

    watch = _Watch(AdaptConfig(), Path("x"), 256, chance=(0.5, 0.05))
    watch.validation(0, 0.55)  # within noise of chance: nothing to lose yet
    watch.validation(10, 0.52)
    watch.validation(20, 0.70)  # clearly above (3 SE = 0.15)
    watch.validation(30, 0.60)
    with pytest.raises(Collapsed) as error:
        watch.validation(40, 0.49)
    one_line(
        error,
        "collapsed: validation accuracy 0.490 back at chance (0.500)",
        "0.700 at step 20",
        "at step 40",
    )


@needs_data
def test_an_adaptation_that_loses_its_validation_accuracy_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import icl_interp.lm.adapt.run as adapt_module

    accuracies = iter([1.0, 0.0, 0.0])  # step 0 (before training), then each validation
    real = adapt_module.validation_metrics

    def falling(*args, **kwargs):
        return {**real(*args, **kwargs), "val_acc": next(accuracies)}

    monkeypatch.setattr(adapt_module, "validation_metrics", falling)
    out = tmp_path / "adapted"
    with pytest.raises(UserError) as error:
        # 8 episodes x 2 queries of SST-2: chance 0.5, 3 SE of guessing 0.375
        adapt_module.adapt(_adapt_config(out, val_episodes=8, eval_every=2))
    one_line(error, "collapsed: validation accuracy 0.000 back at chance", "at step 2")
    assert not (out / "checkpoint.pt").exists()


def test_an_ordinary_random_model_is_not_mistaken_for_a_collapse() -> None:
    from icl_interp.lm.adapt.config import AdaptConfig
    from icl_interp.lm.adapt.run import _Watch

    watch = _Watch(AdaptConfig(), Path("x"), 256)
    for step, loss in enumerate([5.55, 5.549, 5.53, 5.5], start=1):  # near ln 256 = 5.545
        watch.loss(step, loss)
        watch.gradient(step, 0.3)


@pytest.fixture
def small_data(tmp_path: Path) -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("needs ../shared/data")
    data = tmp_path / "data"
    shutil.copytree(SHARED_DATA / "sst2", data / "sst2")
    return data


def _stopped_run(out: Path, data: Path, **overrides) -> object:
    from icl_interp.lm.adapt.run import adapt

    config = _adapt_config(out, data_dir=str(data), **overrides)
    adapt(dataclasses.replace(config, max_minutes=1e-9))  # stops at step 0 with a checkpoint
    assert (out / "checkpoint.pt").exists()
    return config


def test_a_resume_on_changed_training_data_is_refused(tmp_path: Path, small_data: Path) -> None:
    from icl_interp.lm.adapt.run import adapt

    out = tmp_path / "run"
    config = _stopped_run(out, small_data)
    train = small_data / "sst2" / "train.txt"
    lines = train.read_text().splitlines()
    train.write_text("\n".join(["1 an entirely new sentence", *lines[1:]]) + "\n")
    with pytest.raises(UserError) as error:
        adapt(config)
    one_line(error, "the inputs changed since checkpoint.pt", str(out), "(data sst2 train: ")


def test_a_resume_on_changed_base_weights_is_refused(
    tmp_path: Path, small_data: Path, tiny_model_folder: Path, fingerprint_cache
) -> None:
    from icl_interp.lm.adapt.run import adapt

    base = tmp_path / "base"
    shutil.copytree(tiny_model_folder, base)
    out = tmp_path / "run"
    config = _stopped_run(out, small_data, base=str(base))
    _rewrite_same_size(base / "model.safetensors")
    with pytest.raises(UserError) as error:
        adapt(config)
    one_line(error, "the inputs changed since checkpoint.pt", "(base model: ")


def _garbage(path: Path) -> None:
    path.write_text("not a checkpoint")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def _a_list(path: Path) -> None:
    torch.save([1, 2, 3], path)


def _other_parameters(path: Path) -> None:
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["trainable"] = {"nothing": torch.zeros(1)}
    torch.save(checkpoint, path)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "damage",
    [_garbage, _truncated, _a_list, _other_parameters, _empty],
    ids=["garbage", "truncated", "not-a-dict", "other-parameters", "empty"],
)
def test_a_corrupt_checkpoint_is_named(tmp_path: Path, small_data: Path, damage) -> None:
    from icl_interp.lm.adapt.run import adapt

    out = tmp_path / "run"
    config = _stopped_run(out, small_data)
    damage(out / "checkpoint.pt")
    with pytest.raises(UserError) as error:
        adapt(config)
    one_line(error, str(out / "checkpoint.pt"), "corrupt")


@pytest.mark.parametrize("card", ["{corrupt", "[]", '{"no": "config"}'])
def test_a_corrupt_card_is_named(tmp_path: Path, card: str) -> None:
    from icl_interp.lm.adapt.run import adapt

    out = tmp_path / "run"
    out.mkdir()
    (out / "adapt_card.json").write_text(card)
    with pytest.raises(UserError) as error:
        adapt(_adapt_config(out))
    one_line(error, "adapt_card.json is corrupt or unreadable")


def test_adapt_out_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    from icl_interp.lm.adapt.run import adapt

    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError) as error:
        adapt(_adapt_config(tmp_path / "f"))
    one_line(error, "is a file, not a folder")


# --------------------------------------------------------------------------- 5. no hangs


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1:{port}", "cannot reach the Ray cluster"),
        ("ray://127.0.0.1:{port}", "cannot reach the Ray cluster"),
        ("localhost:{port}", "cannot reach the Ray cluster"),
        ("nonsense", "is not host:port"),
        ("127.0.0.1:", "is not host:port"),
    ],
)
def test_a_ray_address_naming_nothing_is_one_line_within_seconds(
    monkeypatch: pytest.MonkeyPatch, address: str, message: str
) -> None:
    from icl_interp.workers import check_ray_address

    monkeypatch.setenv("RAY_ADDRESS", address.format(port=_closed_port()))
    started = time.perf_counter()
    with pytest.raises(UserError) as error:
        check_ray_address(timeout=5.0)
    one_line(error, message)
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize("address", [None, "", "auto", "local"])
def test_ray_addresses_that_ray_resolves_itself_pass(monkeypatch, address) -> None:
    from icl_interp.workers import check_ray_address

    if address is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", address)
    check_ray_address(timeout=1.0)


def test_a_ray_address_that_listens_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    from icl_interp.workers import check_ray_address

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{server.getsockname()[1]}")
        check_ray_address(timeout=2.0)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _device(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _null(path: Path) -> None:
    path.symlink_to("/dev/null")


def _socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()


READERS = {
    "sentences": lambda p: _loaders().read_sentences(p, 1),
    "label-prefixed": lambda p: _loaders().read_label_prefixed(p, _loaders().int_label(2)),
    "csv": lambda p: _loaders().read_csv(
        p, text_columns={"text": ("t",)}, label_column="l", label_values={"0": 0}
    ),
    "jsonl": lambda p: _loaders().read_jsonl(p, field_keys={"text": "t"}, label_names=("a",)),
}


def _loaders():
    from icl_interp.lm.data import loaders

    return loaders


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize(
    "make", [_fifo, _device, _null, _socket], ids=["fifo", "dev-zero", "dev-null", "socket"]
)
def test_a_data_file_that_is_not_a_regular_file_is_refused_at_once(
    tmp_path: Path, reader: str, make
) -> None:
    path = tmp_path / "train.txt"
    make(path)
    with pytest.raises(UserError) as error:
        READERS[reader](path)
    one_line(error, str(path), "is not a regular file")


@pytest.mark.parametrize("reader", sorted(READERS))
def test_an_oversized_data_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    monkeypatch.setattr(_loaders(), "MAX_DATA_BYTES", 16)
    path = tmp_path / "train.txt"
    path.write_text("1 a sentence that is longer than sixteen bytes\n")
    with pytest.raises(UserError) as error:
        READERS[reader](path)
    one_line(error, str(path), "more than a data file may be (16)")


def test_a_csv_field_longer_than_pythons_default_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    long_text = "word " * 40_000  # 200,000 characters, over csv's 131,072
    path.write_text(f't,l\n"{long_text}",0\n')
    examples = _loaders().read_csv(
        path, text_columns={"text": ("t",)}, label_column="l", label_values={"0": 0}
    )
    assert len(examples) == 1 and len(examples[0].fields["text"]) > 131_072
    import csv

    assert csv.field_size_limit() == 131_072, "the global limit is restored"


# --------------------------------------------------------------------------- 6. lr tables

HEADER = "model,data,finetuning,lr,val_accuracy,seeds,grid\n"
GOOD = [
    "m,mr,gd,0.001,0.5,0,0.001",
    "m,mr,lcgd,0.01,0.5,0,0.001",
    "m,mr,untrained gd,0.001,0.5,0,0.001",
]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([*GOOD, "m,mr,gd,0.1,0.6,0,0.1"], ":5: a second row for m / mr / gd (first on line 2)"),
        (["m,mr,gd,fast,0.5,0,0.001"], ":2: lr 'fast' is not a positive finite number"),
        (["m,mr,gd,-0.001,0.5,0,0.001"], "lr '-0.001' is not a positive"),
        (["m,mr,gd,0,0.5,0,0.001"], "lr '0' is not a positive"),
        (["m,mr,gd,nan,0.5,0,0.001"], "lr 'nan' is not a positive"),
        (["m,mr,gd,inf,0.5,0,0.001"], "lr 'inf' is not a positive"),
        (["m,mr,gd,,0.5,0,0.001"], "lr '' is not a positive"),
        (["m,mr,gd,0.001,0.5,0,0.001,extra"], ":2: expected 7 fields, got 8"),
        (["m,mr,gd,0.001"], ":2: expected 7 fields, got 4"),
        ([",mr,gd,0.001,0.5,0,0.001"], ":2: empty model, data or finetuning"),
        (["m,mr, ,0.001,0.5,0,0.001"], ":2: empty model, data or finetuning"),
        (['m,mr,"gd,0.001,0.5,0,0.001'], "cannot read the lr table"),
    ],
    ids=[
        "duplicate-row", "non-numeric-lr", "negative-lr", "zero-lr", "nan-lr", "inf-lr",
        "empty-lr", "ragged-long", "ragged-short", "empty-model", "blank-finetuning",
        "unterminated-quote",
    ],
)  # fmt: skip
def test_every_row_of_an_lr_table_is_checked_up_front(
    tmp_path: Path, rows: list[str], message: str
) -> None:
    from icl_interp.lm.compare_config import CompareConfig

    table = tmp_path / "lrs.csv"
    table.write_text(HEADER + "\n".join(rows) + "\n")
    with pytest.raises(UserError) as error:
        CompareConfig(lr_table=str(table))
    one_line(error, message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00garbage\x80", "cannot read the lr table"),
        (b"", "lacks the columns"),
        (b"model,data\nm,mr\n", "lacks the columns finetuning, lr"),
    ],
    ids=["binary", "empty-file", "missing-columns"],
)
def test_an_lr_table_that_is_not_one_is_one_line(tmp_path, content: bytes, message) -> None:
    from icl_interp.lm.compare_config import CompareConfig

    table = tmp_path / "lrs.csv"
    table.write_bytes(content)
    with pytest.raises(UserError) as error:
        CompareConfig(lr_table=str(table))
    one_line(error, message)


def test_a_valid_lr_table_reads_and_a_header_only_one_is_empty(tmp_path: Path) -> None:
    from icl_interp.lm.lr_rule import CHOSEN_LRS, check_chosen_table, chosen_lrs

    table = tmp_path / "lrs.csv"
    table.write_text(HEADER + "\n".join(GOOD) + "\n\n")
    assert chosen_lrs("m", "mr", table) == {"gd": 1e-3, "lcgd": 1e-2, "untrained gd": 1e-3}
    table.write_text(HEADER)
    assert chosen_lrs("m", "mr", table) == {}
    assert len(check_chosen_table(CHOSEN_LRS)) > 0, "the packaged table passes"


def test_a_table_lacking_some_finetunings_is_named_not_misreported(tmp_path: Path) -> None:
    from icl_interp.lm.compare import policy_lrs
    from icl_interp.lm.compare_config import CompareConfig
    from icl_interp.lm.data import get_dataset

    table = tmp_path / "lrs.csv"
    table.write_text(HEADER + GOOD[0] + "\n")
    config = CompareConfig(lr_table=str(table))
    with pytest.raises(UserError) as error:
        policy_lrs("m", get_dataset("mr"), config)
    one_line(error, "an lr for gd but not for lcgd, untrained gd", "--lr reference")
    lrs, source = policy_lrs("other", get_dataset("mr"), config)
    assert source.startswith("reference"), "a model the table does not name falls back"


# --------------------------------------------------------------------------- 7. statistics, masks


def _final(seeds: list[int]) -> pd.DataFrame:
    from icl_interp.lm.adapt.table import CONDITIONS

    rows = []
    for seed in seeds:
        for model, mask in CONDITIONS:
            for data in ("sst5", "trec"):
                rows.append(
                    {
                        "model": model,
                        "mask": mask,
                        "data": data,
                        "k": 2,
                        "seed": seed,
                        "accuracy": 0.4 + 0.01 * seed + (0.05 if model == "prefix" else 0),
                        "k_used": 2,
                        "chance": 0.2,
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("replicates", ["1", "39"])
def test_too_few_bootstrap_replicates_for_an_interval_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, replicates: str
) -> None:
    out = tmp_path / "c"
    code, err = run_cli(capsys, "compare", "--bootstrap", replicates, "--out", str(out))
    assert code == 2 and not out.exists()
    assert_one_line(err, "--bootstrap must be 0 (no intervals) or at least 40")


@pytest.mark.parametrize("seeds", [[0], [0, 1]])
def test_one_seed_says_no_interval_instead_of_nan(seeds: list[int]) -> None:
    from icl_interp.lm.adapt.table import (
        paired_differences,
        table2,
        table2_markdown,
    )

    final = _final(seeds)
    paired = paired_differences(final)
    page = table2_markdown(table2(final, paired), paired, tiny_table())
    assert "nan" not in page
    if len(seeds) == 1:
        assert "one seed: no interval" in page and "one seed, so no interval" in page
        assert "one seed: no SE" in page
    else:
        assert "95% t-interval over 2 seeds" in page and "±" in page


@pytest.fixture
def keyless_mask() -> Iterator[str]:
    from icl_interp.masks import MASKS, MaskKind, register_mask

    register_mask(MaskKind("strict_past", "strictly past", "Strict", lambda q, k, n: k < q))
    yield "strict_past"
    MASKS.remove("strict_past")


def test_a_keyless_mask_is_refused_by_the_builder_naming_the_position(keyless_mask) -> None:
    from icl_interp.masks import build_mask

    with pytest.raises(UserError) as error:
        build_mask(keyless_mask, 5)
    one_line(error, "leaves a position with no key to attend to", "position 0 of 5")


def test_a_keyless_mask_is_refused_by_language_model_captures(keyless_mask) -> None:
    from icl_interp.lm.arch import attention_mask_for
    from icl_interp.lm.models import tiny_random_model

    model = tiny_random_model("gemma3")
    with pytest.raises(UserError) as error:
        attention_mask_for(model, keyless_mask, 6, n_prefix=2)
    one_line(error, "no key to attend to", "position 0")


def test_a_keyless_mask_is_refused_by_synthetic_models(keyless_mask) -> None:
    from icl_interp.synthetic.model import ModelConfig, SyntheticTransformer

    with pytest.raises(UserError, match="no key to attend to"):
        SyntheticTransformer(ModelConfig(mask_kind=keyless_mask))


def test_isolated_queries_without_context_are_refused() -> None:
    from icl_interp.masks import build_mask

    with pytest.raises(UserError, match="no key to attend to"):
        build_mask("causal", 3, n_queries=3, isolate_queries=True)


@pytest.mark.parametrize(
    ("rule", "what"),
    [
        (lambda q, k, n: True, "got bool"),
        (lambda q, k, n: (k <= q).int(), "got torch.int32"),
        (lambda q, k, n: (k <= q)[0], "got torch.bool (5,)"),
    ],
    ids=["python-bool", "int-tensor", "wrong-shape"],
)
def test_a_mask_rule_returning_the_wrong_thing_is_one_line(rule, what: str) -> None:
    from icl_interp.masks import MASKS, MaskKind, build_mask, register_mask

    register_mask(MaskKind("odd", "odd", "Odd", rule))
    try:
        with pytest.raises(UserError) as error:
            build_mask("odd", 5)
        one_line(error, "its rule must return a boolean [q_pos, k_pos] tensor", what)
    finally:
        MASKS.remove("odd")


def _conditions():
    from icl_interp.lm.metrics import Conditions
    from tests.lm.test_metrics import make_capture

    return Conditions(zsl=make_capture(), icl=make_capture(), ft=make_capture())


@pytest.mark.parametrize(
    ("returned", "what"),
    [
        (0.5, "returned a float"),
        ([0.1, 0.2], "returned a list"),
        (None, "returned a NoneType"),
        (torch.ones(3), "shape (3,)"),
        (torch.ones(2, 1), "shape (2, 1)"),
        (torch.ones(()), "shape ()"),
        (torch.ones(2, dtype=torch.long), "torch.int64"),
    ],
    ids=["python-float", "list", "none", "too-long", "2d", "scalar", "integer"],
)
def test_a_metric_returning_the_wrong_thing_says_what_a_metric_must_return(
    returned, what: str
) -> None:
    from icl_interp.lm.metrics.core import Metric

    metric = Metric("bad", lambda conditions: returned, "bad")
    with pytest.raises(UserError) as error:
        metric(_conditions())
    one_line(error, "metric 'bad'", what, "a metric must return a float tensor of shape [layer]")


# --------------------------------------------------------------------------- 8. streams


def test_a_closed_pipe_ends_quietly_after_writing_the_results(tmp_path: Path) -> None:
    out = tmp_path / "lsa"
    read, write = os.pipe()
    os.close(read)  # `| head -1` that has already gone
    proc = subprocess.run(
        [sys.executable, "-m", "icl_interp", *_cli_args("lsa", str(out))],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    os.close(write)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (out / "results.csv").exists()


def test_the_quiet_pipe_swallows_only_a_broken_pipe() -> None:
    from icl_interp.cli import QuietPipe

    class Gone:
        def write(self, text: str) -> int:
            raise BrokenPipeError

        def flush(self) -> None:
            raise BrokenPipeError

        def fileno(self) -> int:
            raise ValueError("no fd")

    stream = QuietPipe(Gone())
    assert stream.write("abc") == 3 and stream.broken
    stream.write("more")
    stream.flush()

    class Full:
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        QuietPipe(Full()).write("x")


@pytest.mark.parametrize("name", ["résultats", "结果", "emoji-🙂", "tab\tname"])
def test_printing_a_path_never_fails_on_its_characters(tmp_path: Path, name: str) -> None:
    out = tmp_path / name / "lsa"
    env = {**subprocess_env(), "PYTHONIOENCODING": "ascii", "LC_ALL": "C"}
    proc = subprocess.run(
        [sys.executable, "-m", "icl_interp", *_cli_args("lsa", str(out))],
        capture_output=True,
        text=True,
        env=env,
        encoding="ascii",
        errors="replace",
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "results.csv").exists() and "wrote" in proc.stdout


def test_an_error_naming_a_non_ascii_path_prints_on_an_ascii_stderr(tmp_path: Path) -> None:
    out = tmp_path / "dossier-é"
    out.write_text("a file")
    env = {**subprocess_env(), "PYTHONIOENCODING": "ascii"}
    proc = subprocess.run(
        [sys.executable, "-m", "icl_interp", *_cli_args("lsa", str(out))],
        capture_output=True,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.count(b"\n") == 1 and b"is a file, not a folder" in proc.stderr


@pytest.mark.parametrize(
    "command", ["lsa", "synthetic", "layers", "compare", "adapt", "adapt-table"]
)
@pytest.mark.parametrize("value", ["", "  "], ids=["empty", "blank"])
def test_an_empty_out_is_refused(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    value: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, *_cli_args(command, value))
    assert code == 2
    assert_one_line(err, "--out is empty (an unset shell variable?)")
    assert list(tmp_path.iterdir()) == [], "nothing written into the working directory"


@pytest.mark.parametrize(
    "argv",
    [
        ["layers", "--data-dir", "", "--out", "x"],
        ["compare", "--models", "", "--out", "x"],
        ["adapt", "--base", "", "--out", "x"],
        ["compare", "--models", "tiny-gemma3", "", "--out", "x"],
        ["lsa", "--out="],
    ],
    ids=["data-dir", "models", "base", "second-list-value", "equals-form"],
)
def test_other_empty_values_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch, argv: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line(err, "is empty")


# --------------------------------------------------------------------------- 9. API


@pytest.fixture(scope="module")
def gemma():
    from icl_interp.lm.models import tiny_random_model

    return tiny_random_model("gemma3")


def _capture_args(model) -> dict:
    bos = model.tokenizer.bos_token_id
    return {
        "prefix_ids": torch.tensor([bos, 7, 8]),
        "query_ids": [torch.tensor([9, 10]), torch.tensor([11])],
        "labels": torch.tensor([0, 1]),
        "label_token_ids": torch.tensor([20, 21]),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": torch.tensor([0, 2])}, "labels[1] = 2 is outside the label set 0..1"),
        ({"labels": torch.tensor([-1, 0])}, "labels[0] = -1 is outside the label set"),
        ({"prefix_ids": torch.tensor([2, 10**6])}, "prefix_ids holds token id 1000000"),
        ({"prefix_ids": torch.tensor([2, -5])}, "prefix_ids holds token id -5"),
        ({"query_ids": [torch.tensor([9]), torch.tensor([10**7])]}, "query_ids[1] holds token"),
        ({"label_token_ids": torch.tensor([20, 10**6])}, "label_token_ids holds token id"),
    ],
    ids=[
        "label-too-big", "label-negative", "prefix-beyond-vocab",
        "prefix-negative", "query-beyond-vocab", "label-token-beyond-vocab",
    ],
)  # fmt: skip
def test_capture_range_checks_labels_and_token_ids(gemma, change: dict, message: str) -> None:
    from icl_interp.lm.capture import capture

    with pytest.raises(UserError) as error:
        capture(gemma, **{**_capture_args(gemma), **change})
    one_line(error, message)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": torch.tensor([0.0, 1.0])}, "labels must be integer indices"),
        ({"prefix_ids": torch.tensor([2.0, 3.0])}, "prefix_ids must be an integer tensor"),
    ],
    ids=["float-labels", "float-prefix"],
)
def test_float_ids_and_labels_are_refused(gemma, change: dict, message: str) -> None:
    """(Under pytest the jaxtyping hook refuses these at ``capture``'s signature first.)"""
    from icl_interp.lm.capture import _check_inputs

    args = {**_capture_args(gemma), **change}
    with pytest.raises(UserError) as error:
        _check_inputs(
            gemma, args["prefix_ids"], args["query_ids"], args["labels"], args["label_token_ids"]
        )
    one_line(error, message)


@pytest.mark.parametrize("bad", [10**6, -1])
def test_finetuning_range_checks_token_ids(gemma, bad: int) -> None:
    from icl_interp.lm.finetune import finetune

    bos = gemma.tokenizer.bos_token_id
    with pytest.raises(UserError) as error:
        finetune(gemma, [torch.tensor([bos, 7, 8]), torch.tensor([bos, bad, 9])])
    one_line(error, f"demonstration 1 holds token id {bad}", "outside the model's vocabulary")


def test_in_range_inputs_still_capture(gemma) -> None:
    from icl_interp.lm.capture import capture

    result = capture(gemma, **_capture_args(gemma))
    assert torch.isfinite(result.layer_label_logits).all()


# --------------------------------------------------------------------------- 10. cleanup


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize(
    "how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["kill", "term", "int"]
)
def test_killing_a_parallel_synthetic_driver_leaves_no_workers(tmp_path: Path, how) -> None:
    argv = [
        "synthetic", "--preset", "tiny", "--tasks", "linear", "--sharing", "SL",
        "--seeds", "0", "1", "--epochs", "200", "--workers", "2", "--threads", "1",
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "icl_interp", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        workers: set[int] = set()
        for _ in range(600):  # the pool's workers (spawned: they import torch first)
            workers = {p for p in _children(proc.pid) if "spawn" in _cmdline(p)}
            if len(workers) >= 2 and list((tmp_path / "out").glob("runs/*")):
                break
            time.sleep(0.1)
        assert workers, "the driver started no workers"
        time.sleep(1.0)
        proc.send_signal(how)
        proc.wait(timeout=60)
        for _ in range(100):
            if not any(_alive(w) for w in workers):
                break
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "workers outlived their driver"
    finally:
        if proc.poll() is None:
            proc.kill()
    if how == signal.SIGTERM:
        assert proc.returncode == 143
    if how == signal.SIGINT:
        assert proc.returncode == 130


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_pool_worker_exits_at_once_if_its_driver_is_already_gone() -> None:
    code = (
        "import os\nfrom icl_interp.workers import die_with_parent\n"
        "die_with_parent(os.getppid() + 1)\nprint('still here')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert proc.returncode == 1 and "still here" not in proc.stdout


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_leaving_a_pool_by_an_exception_terminates_its_workers() -> None:
    import multiprocessing

    from icl_interp.workers import process_pool

    with (
        pytest.raises(KeyboardInterrupt),
        process_pool(2, multiprocessing.get_context("spawn")) as pool,
    ):
        future = pool.submit(time.sleep, 60)
        processes = list(pool._processes.values())  # noqa: SLF001
        time.sleep(0.5)
        raise KeyboardInterrupt
    # the process table, not multiprocessing's bookkeeping: with the pool's manager thread
    # reaping the same child, Process.is_alive() can say True for a process already gone
    for _ in range(100):
        if not any(_alive(process.pid) for process in processes):
            break
        time.sleep(0.1)
    assert not any(_alive(p.pid) for p in processes), "the worker was left running its task"
    assert future.done()


def test_a_finished_adaptation_on_changed_data_is_not_reused(
    tmp_path: Path, small_data: Path
) -> None:
    from icl_interp.lm.adapt.run import adapt

    out = tmp_path / "run"
    config = _adapt_config(out, data_dir=str(small_data), steps=2)
    adapt(config)
    adapt(config)  # unchanged: nothing to do
    test = small_data / "sst2" / "test.txt"
    test.write_text(test.read_text().replace("1 ", "0 ", 1))
    with pytest.raises(UserError) as error:
        adapt(config)
    one_line(error, "the inputs changed since adapt_card.json", "(data sst2 test: ")


def test_a_grid_in_which_every_lr_diverged_leaves_the_folder_to_the_corrected_grid(
    tmp_path: Path,
) -> None:
    from icl_interp.lm.compare import result_folder
    from icl_interp.lm.compare_config import CompareConfig

    out = tmp_path / "out"
    result_folder(out, CompareConfig(lr_grid=(1e3, 1e4))).claim()  # claimed by its lr trials
    result_folder(out, CompareConfig(lr_grid=(1e-4, 1e-3))).check()
    with pytest.raises(UserError, match="other settings"):
        result_folder(out, CompareConfig(lr_grid=(1e-4, 1e-3), k=3)).check()
    release_locks(out)


def test_a_notebook_given_a_wrong_results_folder_says_so_in_one_line(tmp_path: Path) -> None:
    from icl_interp.results import read_run, write_config

    with pytest.raises(UserError) as error:
        read_run(tmp_path / "nothing", "compare")
    one_line(error, "no such results folder", "run icl-interp compare first")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError) as error:
        read_run(tmp_path / "plain", "compare")
    one_line(error, "is not a results folder (no readable config.json)")
    write_config(tmp_path / "lsa", {"seed": 0}, command="lsa")
    with pytest.raises(UserError) as error:
        read_run(tmp_path / "lsa", "compare")
    one_line(error, "holds an icl-interp lsa run, not a compare run")
    write_config(tmp_path / "cmp", {"seed": 0}, command="compare")
    with pytest.raises(UserError) as error:
        read_run(tmp_path / "cmp", "compare", ("prompt_attention.csv",))
    one_line(error, "has no prompt_attention.csv")
    assert read_run(tmp_path / "cmp", "compare")["config"] == {"seed": 0}

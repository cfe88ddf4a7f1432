"""Accuracy and Recall2FTP from label-word logits, per layer (logit lens).

Layer l's prediction is the argmax over label words of ``layer_label_logits[:, l]`` (the
residual stream after block l through the final norm and unembedding); the last layer is the
model's own prediction, which is what the summary table reports (``over_layers="last"``).
"""

from __future__ import annotations

from jaxtyping import Bool, Float, Int
from torch import Tensor

from icl_interp.lm.metrics.core import Conditions, register_metric
from icl_interp.lm.record import Capture


def correct(capture: Capture) -> Bool[Tensor, "example layer"]:
    """Whether each layer's label-word argmax equals the example's label."""
    return capture.layer_label_logits.argmax(dim=-1) == capture.labels[:, None]


def layer_accuracy(
    layer_label_logits: Float[Tensor, "example layer label"], labels: Int[Tensor, " example"]
) -> Float[Tensor, " layer"]:
    """The toolkit's one argmax accuracy: per layer, the fraction of examples whose true label
    word has the highest logit (ties go to the lowest label index)."""
    return (layer_label_logits.argmax(dim=-1) == labels[:, None]).float().mean(dim=0)


@register_metric("accuracy_zsl", label="acc ZSL", over_layers="last", uses=("zsl",))
def accuracy_zsl(c: Conditions) -> Float[Tensor, " layer"]:
    """Accuracy of zero-shot = mean_e [argmax_label logits_ZSL = y]."""
    return correct(c.zsl).float().mean(dim=0)


@register_metric("accuracy_icl", label="acc ICL", over_layers="last", uses=("icl",))
def accuracy_icl(c: Conditions) -> Float[Tensor, " layer"]:
    """Accuracy of ICL = mean_e [argmax_label logits_ICL = y]."""
    return correct(c.icl).float().mean(dim=0)


@register_metric("accuracy_ft", label="acc", over_layers="last", uses=("ft",))
def accuracy_ft(c: Conditions) -> Float[Tensor, " layer"]:
    """Accuracy of the finetuned model = mean_e [argmax_label logits_FT = y]."""
    assert c.ft is not None
    return correct(c.ft).float().mean(dim=0)


@register_metric("recall2ftp", label="Recall2FTP", over_layers="last")
def recall2ftp(c: Conditions) -> Float[Tensor, " layer"]:
    """Recall2FTP = 100 |ZSL wrong & FT right & ICL right| / |ZSL wrong & FT right| (NaN if 0/0)."""
    assert c.ft is not None
    ft_fixes = ~correct(c.zsl) & correct(c.ft)
    both_fix = ft_fixes & correct(c.icl)
    return 100.0 * both_fix.sum(dim=0).float() / ft_fixes.sum(dim=0).float()

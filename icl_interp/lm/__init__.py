"""Pretrained LMs, layer by layer: data sets and prompts, model loading, capture, finetuning
(GD, layer-causal GD), metrics and the ``layers`` / ``compare`` drivers."""

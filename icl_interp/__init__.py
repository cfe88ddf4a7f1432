"""icl_interp: is in-context learning gradient descent, and does the attention mask matter?

Subpackages: ``lsa`` (linear self-attention theory), ``synthetic`` (small trained
transformers), ``data``/``models``/``capture``/``finetune``/``metrics`` (pretrained LMs).
"""

__version__ = "0.1.0"

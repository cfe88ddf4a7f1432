"""A tiny offline word-level tokenizer (a real ``PreTrainedTokenizerFast``) for tests and tiny random models.

Words are ``\\w+`` runs, punctuation runs, and "\\n" (kept as a token so demonstrations stay separated);
spaces are dropped, so " Positive" is the single token "Positive". Unknown words map to "[UNK]".
Calling it with ``add_special_tokens=True`` prepends "<bos>", like Gemma's tokenizer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("[UNK]", "[PAD]", "<bos>", "<eos>", "\n")
WORD_PATTERN = r"\n|\w+|[^\w\s]+"


def tiny_tokenizer(
    texts: Iterable[str] = (),
    *,
    include_registered: bool = True,
    directory: str | os.PathLike | None = None,
) -> PreTrainedTokenizerFast:
    """Word-level tokenizer whose vocabulary holds every word of ``texts``.

    include_registered: also add the words of every registered data set's template and label words
        (so every ``DATASETS`` label word is one token).
    directory: save it there and return the reloaded copy (``name_or_path`` set, as
        transformer-lens's ``boot_transformers`` needs).
    Ids: [UNK]=0, [PAD]=1, <bos>=2, <eos>=3, "\\n"=4, then the words in sorted order (deterministic).
    """
    pre_tokenizer = pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True)
    all_texts = list(texts)
    if include_registered:
        from icl_interp.lm.data.specs import DATASETS

        for name in DATASETS.names():
            spec = DATASETS.get(name)
            all_texts += [spec.template, *spec.label_words]
    words = {piece for text in all_texts for piece, _ in pre_tokenizer.pre_tokenize_str(text)}
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(words - set(SPECIAL_TOKENS)):
        vocab[word] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizer
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="<bos>",
        eos_token="<eos>",
        add_bos_token=True,
    )
    if directory is None:
        # transformer-lens reloads tokenizers from this name unless it is set
        tokenizer.init_kwargs["name_or_path"] = "tiny-word-level"
        return tokenizer
    tokenizer.save_pretrained(str(directory))
    return PreTrainedTokenizerFast.from_pretrained(str(directory))

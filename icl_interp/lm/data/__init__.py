"""Classification data sets, demonstrations and prompts for the pretrained-LM analyses (docs/definitions.md).

spec = get_dataset("sst2")
demos = sample_demonstrations(load_examples("sst2", "train"), spec.k, seed=0)
queries = select_eval(load_examples("sst2", "test"), 200, seed=0, exclude=demos)
prompts = build_prompts(tokenizer, spec, demos, queries, max_len=2048)

or all of it in one call, with the adjustments recorded (what every command uses):
spec, prompts, provenance = make_prompts(tokenizer, "sst2", n_test=200, seed=0, context=n_ctx)
"""

from icl_interp.lm.data import catalog  # noqa: F401  (registers the packaged data sets)
from icl_interp.lm.data.examples import Example, clean_text, heldout_split
from icl_interp.lm.data.pipeline import (
    PromptProvenance,
    examples_fingerprint,
    make_prompt_sets,
    make_prompts,
)
from icl_interp.lm.data.prompts import (
    PromptSet,
    bos_token_id,
    build_prompts,
    distinct_inputs,
    filter_by_length,
    label_token_ids,
    permute_labels,
    sample_demonstrations,
    select_eval,
    with_permuted_labels,
)
from icl_interp.lm.data.sources import (
    DATA_DIR_ENV,
    HubDataset,
    MovieReviewsPackage,
    PooledFiles,
    SplitFiles,
)
from icl_interp.lm.data.specs import (
    DATASETS,
    DatasetSpec,
    describe_source,
    get_dataset,
    load_examples,
    register_dataset,
)
from icl_interp.lm.data.tiny_tokenizer import tiny_tokenizer

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DatasetSpec",
    "Example",
    "HubDataset",
    "MovieReviewsPackage",
    "PooledFiles",
    "PromptProvenance",
    "PromptSet",
    "SplitFiles",
    "bos_token_id",
    "build_prompts",
    "clean_text",
    "describe_source",
    "distinct_inputs",
    "examples_fingerprint",
    "filter_by_length",
    "get_dataset",
    "heldout_split",
    "label_token_ids",
    "load_examples",
    "make_prompt_sets",
    "make_prompts",
    "permute_labels",
    "register_dataset",
    "sample_demonstrations",
    "select_eval",
    "tiny_tokenizer",
    "with_permuted_labels",
]

"""The packaged data sets: one ``register_dataset`` call each (docs/definitions.md).

SST-2, SST-5, MR, Subj, AG News and CB follow the reference paper; TREC, RTE, CR, MPQA and IMDB
are ours: their templates, label words, k and learning rates are our choices, not from the
papers. Imported by ``icl_interp.lm.data``, so the registry holds them whenever the package is
imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from icl_interp.lm.data.loaders import (
    coarse_label,
    int_label,
    read_csv,
    read_jsonl,
    read_label_prefixed,
    read_sentences,
)
from icl_interp.lm.data.sources import (
    HubDataset,
    MovieReviewsPackage,
    PooledFiles,
    SplitFiles,
)
from icl_interp.lm.data.specs import DatasetSpec, register_dataset


def _sentence_files(folder: str, negative: str, positive: str) -> PooledFiles:
    return PooledFiles(
        folder,
        {negative: partial(read_sentences, label=0), positive: partial(read_sentences, label=1)},
    )


def _label_prefixed(folder: str, files: Mapping[str, str], n_classes: int) -> SplitFiles:
    return SplitFiles(folder, files, partial(read_label_prefixed, parse_label=int_label(n_classes)))


def _superglue(folder: str, label_names: tuple[str, ...]) -> SplitFiles:
    return SplitFiles(
        folder,
        {"train": "train.jsonl", "test": "val.jsonl", "val": "val.jsonl"},
        partial(
            read_jsonl,
            field_keys={"premise": "premise", "hypothesis": "hypothesis"},
            label_names=label_names,
        ),
    )


SENTIMENT = ("negative", "positive")
TREC_COARSE = ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM")
AGNEWS_CLASSES = ("World", "Sports", "Business", "Sci/Tech")

register_dataset(
    DatasetSpec(
        name="sst2",
        template="Sentence: {text} Label:",
        label_words=(" Negative", " Positive"),
        k=32,
        gd_lr=5e-4,
        label_names=SENTIMENT,
        folder=_label_prefixed(
            "sst2", {"train": "train.txt", "test": "test.txt", "dev": "dev.txt"}, 2
        ),
        hub=HubDataset(
            "stanfordnlp/sst2",
            {"train": "train", "test": "validation"},
            label_texts=SENTIMENT,
            columns={"text": "sentence"},
        ),
        description="SST-2 sentence polarity (Socher et al. 2013).",
    )
)
register_dataset(
    DatasetSpec(
        name="sst5",
        template="Sentence: {text} Label:",
        label_words=(" terrible", " bad", " neutral", " good", " great"),
        k=32,
        gd_lr=1.6e-4,
        label_names=("very negative", "negative", "neutral", "positive", "very positive"),
        folder=_label_prefixed(
            "sst5", {"train": "train.txt", "test": "test.txt", "dev": "dev.txt"}, 5
        ),
        hub=HubDataset(
            "SetFit/sst5",
            {"train": "train", "test": "test", "dev": "validation"},
            label_texts=("very negative", "negative", "neutral", "positive", "very positive"),
        ),
        description="SST-5 fine-grained sentiment.",
    )
)
register_dataset(
    DatasetSpec(
        name="mr",
        template="Review: {text} Sentiment:",
        label_words=(" Negative", " Positive"),
        k=32,
        gd_lr=3e-3,
        label_names=SENTIMENT,
        folder=_sentence_files("mr", "rt-polarity.neg", "rt-polarity.pos"),
        package=MovieReviewsPackage("rotten_tomatoes"),
        hub=HubDataset(
            "cornell-movie-review-data/rotten_tomatoes",
            {"train": "train", "test": "test"},
            label_texts=("neg", "pos"),
        ),
        description="MR movie-review sentence polarity v1.0 (Pang & Lee 2005).",
    )
)
register_dataset(
    DatasetSpec(
        name="subj",
        template="Input: {text} Type:",
        label_words=(" objective", " subjective"),
        k=32,
        gd_lr=3e-3,
        label_names=("objective", "subjective"),
        folder=_sentence_files("subj", "subj.objective", "subj.subjective"),
        hub=HubDataset(
            "SetFit/subj",
            {"train": "train", "test": "test"},
            label_texts=("objective", "subjective"),
        ),
        description="Subjectivity (Pang & Lee 2004).",
    )
)
register_dataset(
    DatasetSpec(
        name="agnews",
        template=(
            "Classify the news articles into the categories of World, Sports, Business, and Technology. "
            "Article: {text} Answer:"
        ),
        label_words=(" World", " Sports", " Business", " Technology"),
        k=22,
        gd_lr=0.2,
        label_names=AGNEWS_CLASSES,
        folder=PooledFiles(
            "agnews",
            {
                "test.csv": partial(
                    read_csv,
                    text_columns={"text": ("Title", "Description")},
                    label_column="Class Index",
                    label_values={"1": 0, "2": 1, "3": 2, "4": 3},
                )
            },
        ),
        hub=HubDataset(
            "fancyzhx/ag_news", {"train": "train", "test": "test"}, label_texts=AGNEWS_CLASSES
        ),
        description="AG News topic classification; text = title + ' ' + description.",
    )
)
register_dataset(
    DatasetSpec(
        name="cb",
        template="{premise} Question: {hypothesis}. True, False, or Neither? Answer:",
        label_words=(" True", " False", " Neither"),
        k=19,
        gd_lr=0.08,
        label_names=("entailment", "contradiction", "neutral"),
        folder=_superglue("cb", ("entailment", "contradiction", "neutral")),
        hub=HubDataset(
            "aps/super_glue",
            {"train": "train", "test": "validation", "val": "validation"},
            label_texts=("entailment", "contradiction", "neutral"),
            columns={"premise": "premise", "hypothesis": "hypothesis"},
            config="cb",
        ),
        description="CommitmentBank (SuperGLUE); test = the labelled val.jsonl. Neutral is rare.",
    )
)
register_dataset(
    DatasetSpec(
        name="rte",
        template="{premise} Question: {hypothesis} True or False? Answer:",
        label_words=(" True", " False"),
        k=8,
        gd_lr=0.01,
        label_names=("entailment", "not_entailment"),
        folder=_superglue("rte", ("entailment", "not_entailment")),
        hub=HubDataset(
            "aps/super_glue",
            {"train": "train", "test": "validation", "val": "validation"},
            label_texts=("entailment", "not_entailment"),
            columns={"premise": "premise", "hypothesis": "hypothesis"},
            config="rte",
        ),
        description="RTE (SuperGLUE); test = the labelled val.jsonl. Template, label words, k, lr: ours.",
    )
)
register_dataset(
    DatasetSpec(
        name="trec",
        template="Question: {text} Type:",
        label_words=(" abbreviation", " entity", " description", " person", " location", " number"),
        k=24,
        gd_lr=1e-3,
        label_names=TREC_COARSE,
        folder=SplitFiles(
            "trec",
            {"train": "train.txt", "test": "test.txt"},
            partial(read_label_prefixed, parse_label=coarse_label(TREC_COARSE)),
        ),
        hub=HubDataset(
            "CogComp/trec",
            {"train": "train", "test": "test"},
            label_texts=TREC_COARSE,
            label_column="coarse_label",
        ),
        description="TREC question type, 6 coarse classes. Template, label words, k, lr: ours.",
    )
)
register_dataset(
    DatasetSpec(
        name="cr",
        template="Review: {text} Sentiment:",
        label_words=(" Negative", " Positive"),
        k=32,
        gd_lr=3e-3,
        label_names=SENTIMENT,
        folder=_sentence_files("cr", "custrev.neg", "custrev.pos"),
        hub=HubDataset(
            "SetFit/SentEval-CR", {"train": "train", "test": "test"}, label_texts=SENTIMENT
        ),
        description="Customer reviews (Hu & Liu 2004). Template, label words, k, lr: ours (as MR).",
    )
)
register_dataset(
    DatasetSpec(
        name="mpqa",
        template="Phrase: {text} Polarity:",
        label_words=(" Negative", " Positive"),
        k=32,
        gd_lr=3e-3,
        label_names=SENTIMENT,
        folder=_sentence_files("mpqa", "mpqa.neg", "mpqa.pos"),
        hub=HubDataset("SetFit/mpqa", {"train": "train", "test": "test"}, label_texts=SENTIMENT),
        description="MPQA opinion polarity of short phrases. Template, label words, k, lr: ours.",
    )
)
register_dataset(
    DatasetSpec(
        name="imdb",
        template="Review: {text} Sentiment:",
        label_words=(" Negative", " Positive"),
        k=4,
        gd_lr=3e-3,
        label_names=SENTIMENT,
        package=MovieReviewsPackage("imdb"),
        hub=HubDataset(
            "stanfordnlp/imdb", {"train": "train", "test": "test"}, label_texts=("neg", "pos")
        ),
        description="IMDB reviews (long: ~300 tokens each, hence k=4). Template, label words, k, lr: ours.",
    )
)

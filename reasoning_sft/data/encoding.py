"""Stage 3 logic: records -> Arrow rows of input_ids, labels (-100 on the prompt) and length."""

import os

import numpy as np

from reasoning_sft.data.template import labels_for, tokenize_examples

FIELDS = ("instruction", "reasoning", "intention", "code")


def id_dtype(vocab_size):
    """Smallest integer type holding every id and the label -100 (CodeLlama's 32k vocab fits int16)."""
    if vocab_size <= np.iinfo(np.int16).max:
        return "int16"
    return "int32"


def encode_batch(batch, tokenizer, reasoning_open_id):
    """datasets.map function: a batch of record columns -> input_ids, labels, length."""
    records = [dict(zip(FIELDS, values)) for values in zip(*(batch[f] for f in FIELDS))]
    ids_list = tokenize_examples(tokenizer, records)
    return {
        "input_ids": ids_list,
        "labels": [labels_for(ids, reasoning_open_id) for ids in ids_list],
        "length": [len(ids) for ids in ids_list],
    }


def encode_records(records, tokenizer, num_proc=None):
    """A datasets.Dataset with compact integer columns input_ids, labels, length."""
    import datasets

    dtype = id_dtype(len(tokenizer))
    features = datasets.Features({
        "input_ids": datasets.Sequence(datasets.Value(dtype)),
        "labels": datasets.Sequence(datasets.Value(dtype)),
        "length": datasets.Value("int32"),
    })
    table = datasets.Dataset.from_dict({f: [r[f] for r in records] for f in FIELDS})
    num_proc = num_proc or os.cpu_count() or 1
    # forking workers costs more than it saves on small inputs
    num_proc = max(1, min(num_proc, len(records) // 2000))
    return table.map(
        encode_batch, batched=True, batch_size=1000, num_proc=num_proc if num_proc > 1 else None,
        fn_kwargs={"tokenizer": tokenizer, "reasoning_open_id": tokenizer.convert_tokens_to_ids("<reasoning>")},
        remove_columns=list(FIELDS), features=features, desc="encode",
    )


def token_totals(dataset):
    """(total tokens, trained tokens) of an encoded dataset, read column-wise from Arrow."""
    import pyarrow.compute as pc

    total = pc.sum(dataset.data.column("length")).as_py() or 0
    labels = pc.list_flatten(dataset.data.column("labels"))
    trained = len(labels) - (pc.sum(pc.equal(labels, -100)).as_py() or 0)
    return int(total), int(trained)

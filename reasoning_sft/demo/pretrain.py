"""A short plain causal-LM pre-training of the demo's tiny model on a corpus' text, without tags.

A real base model (CodeLlama) knows the language of instructions, explanations and Python
before it is fine-tuned; it does not know the reasoning -> intention -> code format. The
demo's model is built from random weights, so it is first taught the text: each record is
one document, BOS + instruction, reasoning, intention and code separated by blank lines +
EOS, as a base model sees a task, its explanation and its code in a tutorial. It never sees
a tag: writing <reasoning>…</reasoning><intention>…</intention><code>…</code> is what
fine-tuning has to teach.

Used by `python -m reasoning_sft.demo.tiny_llama --pretrain_epochs N` (what `make demo` runs);
not a stage of the pipeline.
"""

import json
import math
import os
import time

import numpy as np

from reasoning_sft.data.records import FIELDS, _instruction_key
from reasoning_sft.data.template import TAGS
from reasoning_sft.errors import UserError

PRETRAIN_METRICS = "pretrain_metrics.jsonl"   # one row per logged step, beside the model
PRETRAIN_SUMMARY = "pretrain.json"            # settings, token counts, first/last loss, seconds
DOC_SEPARATOR = "\n\n"


def record_text(record):
    """A record's fields in order, separated by blank lines; None when a field is missing or holds a tag."""
    if not isinstance(record, dict):
        return None
    key = _instruction_key(record)  # the alias validation reads (records.validate)
    parts = [record.get(key)] + [record.get(name) for name in FIELDS[1:]]
    if not all(isinstance(p, str) and p.strip() for p in parts) or any(tag in p for p in parts for tag in TAGS):
        return None
    return DOC_SEPARATOR.join(p.strip("\n") for p in parts)


def pretraining_documents(records):
    """One plain-text document per usable record (see record_text)."""
    return [text for text in map(record_text, records) if text is not None]


def token_stream(token_lists, rng):
    """The documents' ids in a random order, concatenated (each already BOS ... EOS)."""
    order = rng.permutation(len(token_lists))
    return np.concatenate([token_lists[i] for i in order])


def rows_for_epoch(token_lists, seq_len, rng):
    """One epoch as [n_rows, seq_len] (packed, as GPT-style pre-training does; the tail is dropped)."""
    stream = token_stream(token_lists, rng)
    n_rows = len(stream) // seq_len
    rows = stream[: n_rows * seq_len].reshape(n_rows, seq_len)
    return rows[rng.permutation(n_rows)]


def lr_at(step, total, peak, warmup):
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress_)))


def eval_loss(model, token_lists):
    """Mean loss per predicted token over whole documents (no packing), without training."""
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for ids in token_lists:
            batch = torch.from_numpy(ids[None, :])
            total += model(input_ids=batch, labels=batch).loss.item() * (len(ids) - 1)
            count += len(ids) - 1
    model.train()
    return round(total / max(count, 1), 4)


def pretrain(model_dir, records, epochs=4, lr=3e-3, seq_len=256, batch_size=16, seed=0, log_every=10,
             eval_records=None):
    """Train the model saved in `model_dir` (with its tokenizer.json) on `records`' text; save it back.

    eval_records (never trained on) give an eval loss after every epoch. Writes
    pretrain_metrics.jsonl and pretrain.json beside the weights and returns the summary.
    """
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from reasoning_sft.progress import progress

    docs = pretraining_documents(records)
    if not docs:
        raise UserError("--corpus has no record to pre-train on (one with instruction, reasoning, intention and "
                        "code, all non-empty strings without tags)")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    eos = model.config.eos_token_id
    # the tokenizer's post-processor adds BOS; EOS closes every document
    def encode(texts):
        return [np.array(e.ids + [eos], dtype=np.int64) for e in tokenizer.encode_batch(texts)]

    token_lists = encode(docs)
    eval_lists = encode(pretraining_documents(eval_records)) if eval_records else []
    n_tokens = int(sum(len(t) for t in token_lists))
    if n_tokens < seq_len:
        raise UserError(f"--corpus: its documents hold {n_tokens} tokens, fewer than one packed row of "
                        f"--pretrain_seq_len {seq_len}")
    steps_per_epoch = max(1, n_tokens // seq_len // batch_size)
    total = max(1, int(round(epochs * steps_per_epoch)))
    warmup = max(1, total // 20)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    model.train()
    rows, metrics, t0, step = None, [], time.time(), 0
    bar = progress(total=total, desc="pre-train", unit="step")
    while step < total:
        if rows is None or len(rows) < batch_size:
            rows = rows_for_epoch(token_lists, seq_len, rng)
        batch, rows = torch.from_numpy(rows[:batch_size]), rows[batch_size:]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, lr, warmup)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        if step % log_every == 0 or step == total or step == 1:
            metrics.append({"step": step, "loss": round(loss.item(), 4), "lr": optimizer.param_groups[0]["lr"],
                            "tokens": step * batch_size * seq_len, "seconds": round(time.time() - t0, 2)})
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if eval_lists and (step % steps_per_epoch == 0 or step == total):
            metrics.append({"step": step, "eval_loss": eval_loss(model, eval_lists)})
    bar.close()
    model.save_pretrained(model_dir)
    train_rows = [m for m in metrics if "loss" in m]
    summary = {"documents": len(docs), "tokens_per_epoch": n_tokens, "epochs": epochs, "steps": total,
               "seq_len": seq_len, "batch_size": batch_size, "lr": lr, "seed": seed,
               "first_loss": train_rows[0]["loss"], "last_loss": train_rows[-1]["loss"],
               "eval_documents": len(eval_lists),
               "last_eval_loss": next((m["eval_loss"] for m in reversed(metrics) if "eval_loss" in m), None),
               "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(model_dir, PRETRAIN_METRICS), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(m) + "\n" for m in metrics)
    with open(os.path.join(model_dir, PRETRAIN_SUMMARY), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return summary

"""Token-budget micro-batches, the deterministic step schedule, and the two batch layouts.

The schedule is a pure function of (lengths, budget, layout, seed, epoch, world size,
grad_accum), so every rank computes the same plan without talking to the others, and a
resumed run finds the exact batch that would have come next.
"""

import numpy as np
import torch

from reasoning_sft.data.template import IGNORE_INDEX, section_ids


def batch_cost(lengths, packed):
    """Token slots a micro-batch computes: the row for packed, n x longest for padded."""
    return sum(lengths) if packed else len(lengths) * max(lengths)


def token_budget_batches(lengths, batch_tokens, packed, seed, epoch):
    """Whole sequences grouped by length into micro-batches of at most batch_tokens slots.

    Sorting by length keeps padded batches nearly free of padding; a random tie-break per
    epoch changes which equal-length sequences meet. A sequence longer than the budget
    gets a batch of its own.
    """
    rng = np.random.default_rng([seed, epoch, 1])
    lengths = np.asarray(lengths)
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches, current, longest, total = [], [], 0, 0
    for i in order.tolist():
        n = int(lengths[i])
        cost = (total + n) if packed else (len(current) + 1) * max(longest, n)
        if current and cost > batch_tokens:
            batches.append(current)
            current, longest, total = [], 0, 0
        current.append(i)
        longest, total = max(longest, n), total + n
    if current:
        batches.append(current)
    return batches


def _split_largest(batches, lengths):
    """Split the batch with the most tokens in two (None if every batch is one sequence)."""
    splittable = [b for b in batches if len(b) > 1]
    if not splittable:
        return None
    big = max(splittable, key=lambda b: sum(lengths[i] for i in b))
    batches.remove(big)
    half = len(big) // 2
    return batches + [big[:half], big[half:]]


def step_schedule(lengths, batch_tokens, packed, seed, epoch, world_size, grad_accum):
    """One epoch as a list of optimizer steps; a step is [micro-step][rank] -> index list.

    Every rank gets the same number of micro-steps (no hang at the end of an epoch): the
    batch count is made a multiple of world_size by splitting the largest batches, or, when
    no batch can be split, by empty batches that contribute no tokens. Batches are sorted
    by token count and dealt out in groups of world_size x grad_accum, so the ranks of a
    micro-step carry near-equal tokens; the order of the groups is shuffled from (seed, epoch).
    """
    lengths = np.asarray(lengths)
    batches = token_budget_batches(lengths, batch_tokens, packed, seed, epoch)
    while len(batches) % world_size:
        split = _split_largest(batches, lengths)
        if split is None:
            batches.append([])
        else:
            batches = split
    batches.sort(key=lambda b: -int(lengths[b].sum()) if b else 0)
    per_step = world_size * grad_accum
    groups = [batches[i:i + per_step] for i in range(0, len(batches), per_step)]
    rng = np.random.default_rng([seed, epoch, 2])
    rng.shuffle(groups)
    return [[group[m:m + world_size] for m in range(0, len(group), world_size)] for group in groups]


def collate(rows, pad_id, packed, tags):
    """Rows (dicts with input_ids, labels) -> model inputs with shifted targets and sections.

    Targets are shifted per sequence (target[t] = label[t + 1]) before rows are joined, so
    the last token of one sequence never learns to predict the first of the next.
    """
    seqs = [np.asarray(r["input_ids"], dtype=np.int64) for r in rows]
    targets, sections = [], []
    for ids, row in zip(seqs, rows):
        labels = np.asarray(row["labels"], dtype=np.int64)
        targets.append(np.append(labels[1:], IGNORE_INDEX))
        sections.append(np.append(section_ids(ids, tags)[1:], 0))
    if not seqs:
        raise ValueError("empty batch")
    if packed:
        return {
            "input_ids": torch.from_numpy(np.concatenate(seqs))[None],
            "position_ids": torch.from_numpy(np.concatenate([np.arange(len(s)) for s in seqs]))[None],
            "targets": torch.from_numpy(np.concatenate(targets))[None],
            "sections": torch.from_numpy(np.concatenate(sections))[None],
        }
    longest = max(len(s) for s in seqs)

    def pad(arrays, value):
        out = np.full((len(arrays), longest), value, dtype=np.int64)
        for row, a in enumerate(arrays):
            out[row, :len(a)] = a
        return torch.from_numpy(out)

    mask = pad([np.ones(len(s)) for s in seqs], 0)
    return {"input_ids": pad(seqs, pad_id), "attention_mask": mask,
            "targets": pad(targets, IGNORE_INDEX), "sections": pad(sections, 0)}


def empty_batch(pad_id):
    """A one-token batch with no targets: keeps a rank in step with the others, adds nothing."""
    one = torch.tensor([[pad_id]])
    return {"input_ids": one, "attention_mask": torch.ones_like(one),
            "targets": torch.full_like(one, IGNORE_INDEX), "sections": torch.zeros_like(one)}

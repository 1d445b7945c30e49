"""Token-budget micro-batches, the deterministic step schedule, and the two batch layouts.

The schedule is a pure function of (lengths, budget, layout, seed, epoch, world size,
grad_accum), so every rank computes the same plan without talking to the others, and a
resumed run finds the exact batch that would have come next.

Batches mix lengths and change every epoch (issue 30): a micro-batch drawn from one band of
near-equal lengths, nearly the same band each epoch, gives every optimizer step one length
class (short, simple examples in one step, long reasoning in the next) and a gradient
correlated across epochs. So each epoch starts from a fresh permutation (seed, epoch):

- packed: sequences are packed in that random order, best-fit decreasing within a window
  of one batch's worth of sequences, into rows that stay open across windows until no
  sequence could still fit. Rows come out nearly full and hold a random sample of lengths.
- padded: the permutation is cut into mega-batches of about MEGA_BATCHES batches' tokens;
  sequences are sorted by length only inside a mega-batch (as transformers'
  LengthGroupedSampler does), so padding stays low while batches differ every epoch.
"""

from bisect import bisect_left, insort

import numpy as np
import torch

from reasoning_sft.data.template import IGNORE_INDEX, section_ids

PACK_WINDOW_BATCHES = 1  # packed: best-fit decreasing over this many batches' worth of sequences at a time
MEGA_BATCHES = 16        # padded: sort by length within random groups of about this many batches' tokens


def batch_cost(lengths, packed):
    """Token slots a micro-batch computes: the row for packed, n x longest for padded."""
    return sum(lengths) if packed else len(lengths) * max(lengths)


def token_budget_batches(lengths, batch_tokens, packed, seed, epoch, pack_window=PACK_WINDOW_BATCHES,
                         mega_batches=MEGA_BATCHES):
    """Whole sequences in micro-batches of at most batch_tokens slots, each sequence once.

    The grouping is drawn afresh from (seed, epoch) (see the module's docstring). A sequence
    longer than the budget gets a batch of its own. pack_window / mega_batches: the packed
    window and the padded mega-batch, in batches' worth of tokens (the trainer uses the defaults;
    benchmarks/bench_batching.py measures others).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if not len(lengths):
        return []
    order = np.random.default_rng([seed, epoch, 1]).permutation(len(lengths))
    windows = _token_windows(lengths, order, (pack_window if packed else mega_batches) * batch_tokens)
    return (_best_fit_rows if packed else _length_grouped_batches)(lengths, windows, batch_tokens)


def _token_windows(lengths, order, tokens):
    """ORDER cut into consecutive runs of about TOKENS tokens each (a run ends once it holds TOKENS)."""
    ends = np.searchsorted(np.cumsum(lengths[order]), np.arange(tokens, int(lengths.sum()) + tokens, tokens))
    bounds = np.unique(np.minimum(ends + 1, len(order)))
    return [w for w in np.split(order, bounds) if len(w)]


def _best_fit_rows(lengths, windows, batch_tokens):
    """Packed rows: inside each window longest first, each sequence into the open row it fills best.

    Rows stay open across windows while they could still take the shortest sequence of the
    data; a window of random sequences fills the gaps the previous ones left, so rows end
    nearly full without sorting the whole epoch by length (which would band lengths again).
    """
    smallest = int(lengths.min())
    rows, open_rows = [], []  # open_rows: sorted (room left, row index)
    for window in windows:
        for i in window[np.argsort(-lengths[window], kind="stable")].tolist():
            n = int(lengths[i])
            k = bisect_left(open_rows, (n, -1))  # the open row with the least room that still fits n
            if k < len(open_rows):
                room, row = open_rows.pop(k)
                rows[row].append(i)
                room -= n
            else:
                row, room = len(rows), batch_tokens - n
                rows.append([i])
            if room >= smallest:
                insort(open_rows, (room, row))
    return rows


def _length_grouped_batches(lengths, windows, batch_tokens):
    """Padded batches: each mega-batch (window) sorted by length and cut greedily at the budget.

    A mega-batch's last, partly filled batch is carried into the next mega-batch rather than
    run short, so only the epoch's last batch may be. Padding grows as mega-batches shrink
    (BENCHMARKS.md, "Batches that mix": 16 keeps 90% of slots real on a long-tailed mix where
    a sort of the whole epoch kept 99.7%, and 97% on the demo data).
    """
    batches, carry = [], []
    for w, window in enumerate(windows):
        members = np.concatenate([np.asarray(carry, dtype=np.int64), window])
        current, longest = [], 0
        for i in members[np.argsort(lengths[members], kind="stable")].tolist():
            n = int(lengths[i])
            if current and (len(current) + 1) * max(longest, n) > batch_tokens:
                batches.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, n)
        if w == len(windows) - 1:
            batches.append(current)
        else:
            carry = current
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

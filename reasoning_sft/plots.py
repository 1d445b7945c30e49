"""PNG reports (matplotlib, Agg backend: no display needed on a cluster node)."""

import numpy as np

from reasoning_sft.artifacts import read_jsonl

SECTION_COLORS = {"prompt": "#9e9e9e", "reasoning": "#1f77b4", "intention": "#ff7f0e", "code": "#2ca02c"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, path):
    """Lay out, write and free one figure (pyplot keeps every open figure alive); returns path."""
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def length_histogram(section_counts, max_len, path, bins=40):
    """Tokens per example, stacked by section, with max_len marked.

    Each example is binned by its total length; within a bin the bar is split by how many
    tokens each section contributes, so a user sees which part makes examples long.
    """
    plt = _pyplot()
    totals = np.array([sum(c.values()) for c in section_counts])
    # max_len is a bin edge, so a bar never seems to straddle it
    width = max_len / bins
    bins = int(np.ceil(max(max_len, int(totals.max())) / width))
    edges = np.arange(bins + 1) * width
    which = np.clip(np.ceil(totals / width).astype(int) - 1, 0, bins - 1)  # bins are (a, b]
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    bottom = np.zeros(bins)
    for name, color in SECTION_COLORS.items():
        tokens = np.array([c.get(name, 0) for c in section_counts], dtype=float)
        # share of each example's length that is this section, summed per bin = examples per bin
        share = np.bincount(which, weights=tokens / np.maximum(totals, 1), minlength=bins)
        ax.bar(edges[:-1], share, width=width, bottom=bottom, align="edge", color=color,
               label=f"{name} ({tokens.sum() / max(totals.sum(), 1):.0%} of tokens)", edgecolor="white", linewidth=0.3)
        bottom += share
    ax.axvline(max_len, color="#d62728", linestyle="--", linewidth=1.5, label=f"--max_len {max_len}")
    ax.set_xlabel("tokens per example (BOS..EOS)")
    ax.set_ylabel("examples")
    ax.set_title(f"Example lengths after filtering: {len(totals)} examples, median {int(np.median(totals))} tokens")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)


def loss_curves(metrics_path, path):
    """Train and eval loss, overall and per section (reasoning / intention / code)."""
    plt = _pyplot()
    rows = read_jsonl(metrics_path, "training metrics", torn_last_line_ok=True)
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110, sharey=True)
    for ax, data, prefix, title in ((axes[0], train, "loss", "train"), (axes[1], evals, "eval_loss", "eval")):
        points = [(r["step"], r[prefix]) for r in data if r[prefix] is not None]  # null: a step not finite
        if points:
            ax.plot(*zip(*points), color="black", linewidth=2, label="all target tokens",
                    marker="o" if len(points) < 20 else None)
        for name in ("reasoning", "intention", "code"):
            points = [(r["step"], r[f"{prefix}_{name}"]) for r in data if r.get(f"{prefix}_{name}") is not None]
            if points:
                ax.plot(*zip(*points), color=SECTION_COLORS[name], linewidth=1.2, label=name,
                        marker="o" if len(points) < 20 else None, markersize=3)
        ax.set_title(f"{title} loss per section" + ("" if data else " (no eval set)"))
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # not when every value was null
            ax.legend(fontsize=8)
    axes[0].set_ylabel("cross-entropy (nats / token)")
    return _save(plt, fig, path)


RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _epoch_of_step(train_rows):
    """step -> epoch from the train rows (eval rows carry only the step); None if rows lack epochs."""
    pairs = sorted((r["step"], r["epoch"]) for r in train_rows if r.get("epoch") is not None)
    if not pairs:
        return None
    steps, epochs = map(np.asarray, zip(*pairs))
    return lambda step: float(np.interp(step, steps, epochs))


def loss_curves_compare(runs, path):
    """Several training runs on one figure: one panel per section (all tokens, reasoning, intention, code).

    runs: [(label, rows of its metrics.jsonl)]. Train loss solid, eval loss dashed with markers,
    one colour per run; x is the epoch (so runs of different lengths line up) when the
    metrics record it, else the optimizer step.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), dpi=100, sharey=True)
    x_label = "epoch"
    for (label, rows), color in zip(runs, RUN_COLORS):
        train = [r for r in rows if "loss" in r]
        evals = [r for r in rows if "eval_loss" in r]
        epoch_of = _epoch_of_step(train)
        if epoch_of is None:
            x_label = "optimizer step"
        x = epoch_of or (lambda step: step)
        for ax, suffix in zip(axes, ("", "_reasoning", "_intention", "_code")):
            for data, prefix, style in ((train, "loss", "-"), (evals, "eval_loss", "--")):
                points = [(x(r["step"]), r[prefix + suffix]) for r in data if r.get(prefix + suffix) is not None]
                if points:
                    ax.plot(*zip(*points), style, color=color, linewidth=1.4 if style == "-" else 1.1,
                            marker=None if style == "-" else "o", markersize=3,
                            label=f"{label} {'train' if style == '-' else 'eval'}")
    for ax, title in zip(axes, ("all target tokens", "reasoning", "intention", "code")):
        ax.set_title(title)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cross-entropy (nats / token)")
    axes[0].legend(fontsize=8)
    return _save(plt, fig, path)


def pretrain_curve(metrics_path, path):
    """The demo model's plain causal-LM pre-training loss (reasoning_sft/demo/pretrain.py), and its eval loss."""
    plt = _pyplot()
    rows = read_jsonl(metrics_path, "pre-training metrics")
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="black", linewidth=1.5, label="train")
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "--o", color="#d62728",
                linewidth=1.2, markersize=3, label="held-out records")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title("pre-training on the text, no tags")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)

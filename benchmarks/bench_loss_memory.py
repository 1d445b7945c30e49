"""Peak memory and time of one forward+backward: HF's full-logits loss vs our chunked head (ChunkedLossLM).

    python benchmarks/bench_loss_memory.py --tokens 16384 --vocab 32016
    python benchmarks/bench_loss_memory.py --tokens 4096 --vocab 152064 --hidden 256 --lora

A Llama decoder with one layer (--hidden wide) and CodeLlama's vocabulary size runs one micro-batch
of --tokens target tokens (one row, every position labelled) both ways, each in a fresh process:

- full:    model(input_ids, labels=labels).loss — transformers computes the logits of every
           position, [tokens, vocab] in fp32, then the loss;
- chunked: ChunkedLossLM — the head runs once on chunks of positions (as many as fit 512 MiB of fp32
           logits: modeling.loss_chunk_rows), computing the loss and its gradients in forward
           (fused_head.py); no logits of the whole batch are kept.

--lora: the model under LoRA r=16 with the last 6 rows trainable as the tags' (lora_model), and only the
chunked head, measured twice: as it runs now (chunk from the bytes; the head's gradient only at the
trainable rows) and as it ran before (4,096-row chunks; a [vocab, hidden] fp32 gradient for the whole
head, which autograd then narrowed to the 6 rows: `before`, ChunkedLossLM(rows_only=False)).

Peak memory = the process's peak resident set (ru_maxrss) after the step minus before it (model,
inputs and the rest already allocated), so it is the memory the step itself adds. The logits of
the full path alone are tokens x vocab x 4 bytes. Both losses are printed to show they agree.
CPU only, offline; the model is random (the memory and time do not depend on the weights).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from reasoning_sft.demo.pipeline import REPO


def one_step(method, tokens, vocab, hidden, lora=False, seed=0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from reasoning_sft.train import modeling
    from reasoning_sft.train.modeling import ChunkedLossLM, loss_chunk_rows

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 8 // 3, num_hidden_layers=1,
                         num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                         max_position_embeddings=tokens + 1)
    model = LlamaForCausalLM(config).train()
    model.config.use_cache = False
    chunk = loss_chunk_rows(vocab) if method != "before" else 4096  # before: 4,096-row chunks
    if lora:
        model = modeling.lora_model(model, list(range(vocab - 6, vocab)), 16, 32, 0.0, "all-linear").train()
    input_ids = torch.randint(0, vocab, (1, tokens + 1))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if method == "full":
        loss = model(input_ids=input_ids, labels=input_ids, use_cache=False).loss  # HF shifts the labels
    else:
        targets = torch.full_like(input_ids, -100)
        targets[:, :-1] = input_ids[:, 1:]  # the same shifted targets, as collate() builds them
        sections = torch.zeros_like(input_ids)
        wrapper = ChunkedLossLM(model, chunk=chunk, rows_only=method != "before")  # before: the whole head's grad
        loss_sum, _ = wrapper.train()(input_ids=input_ids, targets=targets, sections=sections)
        loss = loss_sum / tokens
    loss.backward()
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, "loss": loss.item(), "seconds": seconds, "peak_added_mb": (after - before) / 1024,
            "chunk": chunk if method != "full" else None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--vocab", type=int, default=32016, help="CodeLlama's vocabulary size")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--lora", action="store_true", help="LoRA r=16, 6 trainable tag rows; also the head as before")
    p.add_argument("--_child", choices=["full", "chunked", "before"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        print(json.dumps(one_step(args._child, args.tokens, args.vocab, args.hidden, args.lora)))
        return 0

    results = {}
    for method in ("chunked", "before") if args.lora else ("full", "chunked"):
        cmd = [sys.executable, os.path.abspath(__file__), "--_child", method, "--tokens", str(args.tokens),
               "--vocab", str(args.vocab), "--hidden", str(args.hidden)] + (["--lora"] if args.lora else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout
        results[method] = json.loads(out.strip().splitlines()[-1])
    chunked = results["chunked"]
    logits_mb = args.tokens * args.vocab * 4 / 2**20
    print(f"{args.tokens} target tokens, vocab {args.vocab}, 1 decoder layer of width {args.hidden}"
          f"{', LoRA r=16 + 6 tag rows' if args.lora else ''}, chunk {chunked['chunk']}; fp32 logits of the whole "
          f"batch: {logits_mb:.0f} MiB")
    print(f"{'method':10} {'chunk':>6} {'loss':>10} {'seconds':>8} {'peak added MiB':>15}")
    for r in results.values():
        print(f"{r['method']:10} {r['chunk'] or '-':>6} {r['loss']:10.5f} {r['seconds']:8.2f} "
              f"{r['peak_added_mb']:15.0f}")
    if args.lora:
        before = results["before"]
        print(f"LoRA head, now / before: peak memory added {chunked['peak_added_mb'] / before['peak_added_mb']:.3f}, "
              f"time {chunked['seconds'] / before['seconds']:.3f}; |loss difference| "
              f"{abs(before['loss'] - chunked['loss']):.2e}")
        return 0
    full = results["full"]
    print(f"peak memory added, chunked / full: {chunked['peak_added_mb'] / full['peak_added_mb']:.3f}; "
          f"time, chunked / full: {chunked['seconds'] / full['seconds']:.3f}; "
          f"|loss difference| {abs(full['loss'] - chunked['loss']):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

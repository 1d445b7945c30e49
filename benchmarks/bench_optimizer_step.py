"""Time one optimizer step over many parameters: torch's AdamW default (foreach) vs fused, and bitsandbytes'
8-bit AdamW, each on fp32 weights and on bf16 weights under --precision bf16 (reasoning_sft.train.precision's
per-parameter fp32 step with stochastic rounding). Prints ms per step and the ratios.

    python benchmarks/bench_optimizer_step.py --params 200 --shape 64 64 --repeat 10

Small parameters measure the per-call overhead (what a GPU would sit idle for while the host launches
the step); large ones (--shape 2048 2048) measure the arithmetic on this device.
"""

import argparse
import time

import torch

from reasoning_sft.train.precision import StochasticRounding


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=int, default=200, help="number of parameters (a 1.1B Llama has about 200)")
    p.add_argument("--shape", type=int, nargs=2, default=[64, 64], help="shape of each parameter")
    p.add_argument("--repeat", type=int, default=10, help="timed steps (after 3 untimed ones)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args(argv)


def make_optimizer(kind, params):
    if kind == "adamw8bit":
        import bitsandbytes as bnb
        return bnb.optim.AdamW8bit(params, lr=1e-5, min_8bit_size=0)
    return torch.optim.AdamW(params, lr=1e-5, fused=kind == "adamw_fused")


def ms_per_step(kind, weights, args):
    torch.manual_seed(0)
    dtype = torch.bfloat16 if weights == "bf16" else torch.float32
    params = [torch.nn.Parameter(torch.randn(*args.shape, dtype=dtype, device=args.device))
              for _ in range(args.params)]
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer = make_optimizer(kind, params)
    if weights == "bf16":
        optimizer = StochasticRounding(optimizer, seed=0)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        optimizer.step()
    sync()
    start = time.perf_counter()
    for _ in range(args.repeat):
        optimizer.step()
    sync()
    return (time.perf_counter() - start) / args.repeat * 1e3


def main(argv=None):
    args = parse_args(argv)
    print(f"{args.params} parameters of {args.shape[0]}x{args.shape[1]} on {args.device}, "
          f"{args.repeat} steps each (ms per step)")
    results = {}
    for weights in ("fp32", "bf16"):
        for kind in ("adamw_foreach", "adamw_fused", "adamw8bit"):
            results[kind, weights] = ms_per_step(kind, weights, args)
            label = "fp32 weights" if weights == "fp32" else "bf16 weights, --precision bf16"
            print(f"  {kind:14} {label:32} {results[kind, weights]:8.2f}")
    for weights in ("fp32", "bf16"):
        ratio = results["adamw_foreach", weights] / results["adamw_fused", weights]
        print(f"{weights}: AdamW foreach / fused = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

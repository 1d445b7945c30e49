"""Generation with a fine-tuned model, and a strict check of what it produced.

The prompt is built by data.template.prompt_text, the same code that built the training data:

    BOS + instruction + SEPARATOR + "<reasoning>"

so the model's continuation must be exactly the training target, which data.format.parse_output
checks; evaluate() and summarize() here count the kinds of failure over a whole run.
"""

import os
from collections import Counter

from reasoning_sft.data.format import parse_output
from reasoning_sft.data.records import python_parses
from reasoning_sft.data.template import SECTIONS, TEMPLATE_VERSION
from reasoning_sft.errors import UserError
from reasoning_sft.serve.decoding import decode_continuation, encode_prompts, prompt_token_ids, stop_ids
from reasoning_sft.train.run_contract import check_training_output_if_any

# ---------------------------------------------------------------------------------------
# generation


def generate(model, tokenizer, instructions, max_new_tokens=512, temperature=0.0, top_p=0.95,
             batch_size=8, seed=0):
    """Continuations of `instructions`, one result dict per instruction, in input order.

    Each dict is decode_continuation()'s: {"output": text with the tags kept, "n_tokens",
    "stop", "section_tokens"}. Batches are built from prompts sorted by length (less
    padding), left-padded, and stopped per row at EOS or </code>. temperature == 0 is greedy
    decoding; otherwise sampling with temperature and top_p, seeded by `seed`.
    """
    import torch

    from reasoning_sft.progress import progress

    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; use the one prepare_llamatokenizer.py wrote")
    instructions = list(instructions)
    lengths = [len(ids) for ids in prompt_token_ids(tokenizer, instructions)]
    order = sorted(range(len(instructions)), key=lambda k: lengths[k])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    sampling = temperature > 0
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=sampling, eos_token_id=stop_ids(tokenizer),
                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)
    if sampling:
        kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    else:  # unset sampling knobs a model's generation_config may carry, so greedy is greedy
        kwargs.update(temperature=None, top_p=None, top_k=None)
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    results = [None] * len(instructions)
    with torch.inference_mode():
        for batch in progress(batches, desc="generate", unit="batch"):
            enc = encode_prompts(tokenizer, [instructions[k] for k in batch]).to(device)
            out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kwargs)
            new = out[:, enc["input_ids"].shape[1]:].tolist()
            for k, row in zip(batch, new):
                results[k] = decode_continuation(tokenizer, row)
    return results


# ---------------------------------------------------------------------------------------
# what generate.py and evaluate.py share: the model options, loading, settings


DTYPES = ("auto", "float32", "bfloat16", "float16")
BACKENDS = ("transformers", "vllm", "openai")


def add_model_args(parser, tokenizer_required=True):
    """The options that choose the model, the tokenizer and the device."""
    p = parser
    p.add_argument("--tokenizer_dir", required=tokenizer_required,
                   help="directory written by prepare_llamatokenizer.py")
    p.add_argument("--model_name",
                   help="base model (hub id or directory); default: the one the tokenizer was prepared from")
    p.add_argument("--adapter_dir", help="LoRA adapter to apply to --model_name")
    p.add_argument("--model_dir", help="full fine-tuned model (instead of --model_name/--adapter_dir)")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="auto: bfloat16 on a GPU that supports it, else float32")
    p.add_argument("--flash_attn", action="store_true",
                   help="bf16 on CUDA: flash_attention_2 where flash-attn is installed, else sdpa (docs/design.md)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--backend", choices=BACKENDS, default="transformers",
                   help="vllm: sample with vLLM (--model_dir only; run with .venv-serve/bin/python, `make serve-env`); "
                   "openai: send the instructions to an OpenAI-compatible server (--base_url)")
    p.add_argument("--tensor_parallel_size", type=int, default=1,
                   help="--backend vllm: devices vLLM shards the model over (on a CPU with one NUMA node, also "
                   "set VLLM_CPU_OMP_THREADS_BIND, e.g. '0|1' for 2 workers on cores 0 and 1)")
    p.add_argument("--max_model_len", type=int, help="--backend vllm: prompt + answer tokens the engine plans its KV "
                   "cache for (default: the model's whole context; lower it where that does not fit)")
    from reasoning_sft.serve.openai_backend import add_args

    add_args(p)


def add_sampling_args(parser):
    """The options of generate(): length, temperature, top_p, batch size, seed (generate()'s defaults)."""
    p = parser
    p.add_argument("--max_new_tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy decoding")
    p.add_argument("--top_p", type=float, default=0.95, help="nucleus sampling (only with --temperature > 0)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)


def check_model_and_sampling_args(args, script="generate.py"):
    """UserError for option values that add_model_args/add_sampling_args cannot check by type alone."""
    for name in ("max_new_tokens", "batch_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1")
    if args.temperature < 0:
        raise UserError("--temperature must be >= 0 (0 = greedy)")
    if not 0 < args.top_p <= 1:
        raise UserError("--top_p must be in (0, 1]")
    if args.adapter_dir and args.model_dir:
        raise UserError("give --adapter_dir (LoRA on --model_name) or --model_dir (full weights), not both")
    for name in ("adapter_dir", "model_dir"):
        path = getattr(args, name)
        if path and not os.path.isdir(path):
            raise UserError(f"--{name} {path}: no such directory")
    if args.adapter_dir and not os.path.exists(os.path.join(args.adapter_dir, "adapter_config.json")):
        raise UserError(f"--adapter_dir {args.adapter_dir}: no adapter_config.json, not a LoRA adapter "
                        "(full fine-tuned weights go in --model_dir)")
    for path in (args.adapter_dir, args.model_dir):
        if path:  # a trainer's --output_dir: only a finished run's own final weights
            check_training_output_if_any(path)
    if args.tensor_parallel_size < 1 or (args.max_model_len is not None and args.max_model_len < 2):
        raise UserError("--tensor_parallel_size must be at least 1 and --max_model_len at least 2")
    if args.backend == "openai":
        from reasoning_sft.serve.openai_backend import check_args
        check_args(args, script)
        return
    if not args.tokenizer_dir:
        raise UserError("--tokenizer_dir is required (the directory prepare_llamatokenizer.py wrote)")
    if args.base_url or args.model:
        raise UserError(f"{'--base_url' if args.base_url else '--model'} is for --backend openai "
                        "(a model directory is --model_dir)")
    if args.backend == "vllm":
        from reasoning_sft.serve.vllm_backend import check_args
        check_args(args, script)
    elif args.tensor_parallel_size > 1 or args.max_model_len is not None:
        flag = "--tensor_parallel_size" if args.tensor_parallel_size > 1 else "--max_model_len"
        raise UserError(f"{flag} is for --backend vllm; the transformers backend does not use it")


def pick_device_and_dtype(device=None, dtype="auto"):
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype != "auto":
        return device, getattr(torch, dtype)
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return device, torch.bfloat16
    return device, torch.float32


def load_model_for_generation(args, tokenizer, tok_meta):
    """(model on its device, settings dict) for add_model_args' options; UserError for a bad model.

    --model_name defaults to the base model that the tokenizer was prepared from. --backend openai: (an
    openai_backend.Endpoint, settings); it loads nothing.
    """
    if args.backend == "openai":
        from reasoning_sft.serve.openai_backend import connect

        endpoint, server = connect(args)
        return endpoint, dict(server, template_version=TEMPLATE_VERSION, max_new_tokens=args.max_new_tokens,
                            temperature=args.temperature, top_p=args.top_p if args.temperature > 0 else None,
                            seed=args.seed)
    model_name = args.model_name or tok_meta.get("base_model")
    settings = {
        "backend": args.backend, "model_name": None if args.model_dir else model_name,
        "adapter_dir": args.adapter_dir, "model_dir": args.model_dir, "tokenizer_dir": args.tokenizer_dir,
        "tokenizer_fingerprint": tok_meta.get("fingerprint"), "template_version": TEMPLATE_VERSION,
        "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
        "top_p": args.top_p if args.temperature > 0 else None, "seed": args.seed,
    }
    if args.backend == "vllm":  # vLLM schedules its own batches: --batch_size is not used
        from reasoning_sft.serve.vllm_backend import load_engine

        engine, engine_settings = load_engine(args, tokenizer, tok_meta)
        return engine, dict(settings, model_name=None, **engine_settings)

    from reasoning_sft.train.modeling import load_for_inference

    if not args.model_dir and not model_name:
        raise UserError("--model_name is required (the tokenizer metadata names no base model)")
    device, dtype = pick_device_and_dtype(args.device, args.dtype)
    model = load_for_inference(model_name, tokenizer, adapter_dir=args.adapter_dir, model_dir=args.model_dir,
                               dtype=dtype, flash_attn=args.flash_attn)
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < len(tokenizer):
        raise UserError(f"the model has {rows} token rows but the tokenizer {args.tokenizer_dir} has {len(tokenizer)}; "
                        "was the model trained with this tokenizer?")
    model.to(device)
    settings.update(batch_size=args.batch_size, device=str(device), dtype=str(dtype).replace("torch.", ""))
    return model, settings


def generate_with_args(model, tokenizer, instructions, args, n=1):
    """n results per instruction (instruction-major) with add_sampling_args' options, from the model that
    load_model_for_generation() loaded: generate() repeats each prompt n times, vLLM samples n per prompt,
    --backend openai sends n requests per prompt."""
    if args.backend == "openai":
        from reasoning_sft.serve.openai_backend import generate_openai

        return generate_openai(model, instructions, n=n, max_new_tokens=args.max_new_tokens,
                               temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                               concurrency=args.concurrency)
    if args.backend == "vllm":
        from reasoning_sft.serve.vllm_backend import generate_vllm

        return generate_vllm(model, tokenizer, instructions, n=n, max_new_tokens=args.max_new_tokens,
                             temperature=args.temperature, top_p=args.top_p)
    return generate(model, tokenizer, [i for i in instructions for _ in range(n)], max_new_tokens=args.max_new_tokens,
                    temperature=args.temperature, top_p=args.top_p, batch_size=args.batch_size, seed=args.seed)


def evaluate(result):
    """A generation result dict plus the parse (ok, errors, sections) and syntax_ok.

    syntax_ok: True/False whether the extracted code section parses as Python, None when no
    code section could be extracted. It is judged even when the format check failed
    elsewhere; summarize() counts it only for format-compliant outputs.
    """
    parsed = parse_output(result["output"])
    out = dict(result)
    out.update(parsed.to_dict())
    out["syntax_ok"] = None if parsed.code is None else python_parses(parsed.code)
    return out


def _mean(values):
    values = list(values)
    return round(sum(values) / len(values), 2) if values else None


def summary_path(generations):
    """Where generate.py writes the summary of the generations file GENERATIONS: GENERATIONS_STEM_summary.json."""
    stem, _ = os.path.splitext(generations)
    return stem + "_summary.json"


def summarize(results):
    """Aggregate metrics over evaluate()d results (dicts with at least ok, errors, code, syntax_ok).

    format_ok_rate       outputs that pass parse_output / all outputs
    syntax_ok_rate       outputs that pass parse_output AND whose code parses / all outputs
                         (a malformed output counts as a failure: it yields no usable program)
    syntax_ok_rate_when_format_ok
                         the same numerator / format-compliant outputs (None if there are none)
    mean_chars, mean_tokens   per section, over format-compliant outputs only (where the
                         sections are well defined); mean_tokens needs section_tokens
    mean_output_chars, mean_output_tokens   over all outputs (tokens include the stop token)
    stop_reasons         {"eos" | "</code>" | "length": count}
    error_counts         {error string: number of outputs with it}, most frequent first
    """
    n = len(results)
    ok = [r for r in results if r["ok"]]
    good = sum(1 for r in ok if r.get("syntax_ok"))
    with_tokens = [r for r in ok if r.get("section_tokens")]
    errors = Counter(e for r in results for e in r["errors"])
    return {
        "outputs": n,
        "format_ok": len(ok),
        "syntax_ok": good,
        "format_ok_rate": round(len(ok) / n, 4) if n else None,
        "syntax_ok_rate": round(good / n, 4) if n else None,
        "syntax_ok_rate_when_format_ok": round(good / len(ok), 4) if ok else None,
        "mean_chars": {s: _mean(len(r[s]) for r in ok) for s in SECTIONS},
        "mean_tokens": {s: _mean(r["section_tokens"][s] for r in with_tokens) for s in SECTIONS},
        "mean_output_chars": _mean(len(r["output"]) for r in results if "output" in r),
        "mean_output_tokens": _mean(r["n_tokens"] for r in results if "n_tokens" in r),
        "stop_reasons": dict(Counter(r["stop"] for r in results if "stop" in r).most_common()),
        "error_counts": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def summary_lines(summary):
    """One human-readable line per metric (what generate.py prints)."""
    def rate(value):
        return "n/a" if value is None else f"{value:.1%}"

    def per_section(d, unit):
        return ", ".join(f"{s} {'n/a' if d[s] is None else d[s]}" for s in SECTIONS) + f" {unit}"

    n = summary["outputs"]
    lines = [
        f"outputs: {n}",
        f"format ok: {rate(summary['format_ok_rate'])} ({summary['format_ok']}/{n})",
        f"syntax ok: {rate(summary['syntax_ok_rate'])} ({summary['syntax_ok']}/{n}; "
        f"{rate(summary['syntax_ok_rate_when_format_ok'])} of format-ok outputs)",
        f"mean section length (format-ok outputs): {per_section(summary['mean_chars'], 'chars')}",
        f"mean section tokens (format-ok outputs): {per_section(summary['mean_tokens'], 'tokens')}",
        f"mean output length: {summary['mean_output_chars']} chars, {summary['mean_output_tokens']} tokens",
        f"stop reasons: {summary['stop_reasons'] or 'n/a'}",
        f"errors: {summary['error_counts'] or 'none'}",
    ]
    return lines

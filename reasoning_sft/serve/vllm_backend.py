"""generate.py / evaluate.py --backend vllm: the same prompts, stops and rows as generate(), from vLLM.

Run with the serving venv's python (`make serve-env`): vLLM pins a transformers that .venv does not have.

What is the same as the transformers backend (reasoning_sft/serve/generation.py):
  - the prompt: prompt_token_ids() (the training prompt: BOS where the tokenizer adds one, instruction,
    SEPARATOR, "<reasoning>"), handed to vLLM as token ids, so vLLM's tokenizer and chat template play no part;
  - the stops: stop_ids() (EOS and </code>) as stop_token_ids;
  - the text: decode_continuation() on the generated ids (vLLM detokenizes nothing), so the tags are kept
    and the rows, n_tokens and stop reasons are built by the one function both backends share.
Samples per prompt are vLLM's `n` (one prompt, n sequences), not repeated prompts.

Only full weights can be served (--model_dir: a train_full.py output or an export.py serving dir), in the
model's own dtype (--dtype auto). A LoRA adapter is refused: the adapter's trained rows of the six tag
tokens (embed_tokens / lm_head modules_to_save) are not something vLLM's LoRA support applies; export.py
merges them into full weights that it can serve.
"""

import importlib.util
import json
import os

from reasoning_sft.errors import UserError

NOT_INSTALLED = ("--backend vllm: vLLM is not installed in this Python; run `make serve-env` and use "
                 ".venv-serve/bin/python {script} --backend vllm ...")
ADAPTER_REFUSED = ("--backend vllm cannot apply a LoRA adapter's trained tag-token rows; merge it first with "
                   "`python export.py --model_dir {adapter_dir} --out_dir SERVE_DIR` and pass --model_dir SERVE_DIR")
# what the seed gives, as measured on vLLM 0.32's CPU build (BENCHMARKS.md, "pass@k sampling: vLLM")
REPRODUCIBLE = {
    "cpu": "greedy (--temperature 0) is reproducible and equals the transformers backend in float32; sampled "
           "outputs are not reproducible run to run: the engine is seeded with --seed (this CPU build rejects "
           "per-request seeds), but what each sample draws depends on how vLLM batches the requests",
    "other": "greedy (--temperature 0) is the reproducible mode; sampled outputs are seeded at the engine only, "
             "and what each sample draws depends on how vLLM batches the requests",
}


def check_args(args, script):
    """UserError for options --backend vllm cannot honour (before anything is loaded)."""
    if args.adapter_dir:
        raise UserError(ADAPTER_REFUSED.format(adapter_dir=args.adapter_dir))
    if not args.model_dir:
        raise UserError("--backend vllm needs --model_dir (full fine-tuned weights or an export.py serving dir); "
                        "the base model's new tag rows are initialised only by the transformers backend")
    for flag, given in (("--flash_attn", args.flash_attn), ("--device", args.device)):
        if given:
            raise UserError(f"{flag} is a transformers-backend option; vLLM picks its own device and kernels")
    if importlib.util.find_spec("vllm") is None:
        raise UserError(NOT_INSTALLED.format(script=script))


def _model_config(model_dir):
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise UserError(f"--model_dir {model_dir}: no readable config.json ({err})") from None


def load_engine(args, tokenizer, tok_meta):
    """(vllm.LLM on --model_dir, seeded with --seed, settings dict) for generate_with_args()."""
    from vllm import LLM

    config = _model_config(args.model_dir)
    vocab = config.get("vocab_size")
    if isinstance(vocab, int) and vocab < len(tokenizer):
        raise UserError(f"the model has {vocab} token rows but the tokenizer {args.tokenizer_dir} has "
                        f"{len(tokenizer)}; was the model trained with this tokenizer?")
    # --dtype auto is the model's own dtype: vLLM's "auto" would downcast float32 weights to bfloat16 on a CPU
    dtype = args.dtype if args.dtype != "auto" else config.get("dtype") or config.get("torch_dtype") or "auto"
    # prompts go in as ids and the ids come back undecoded (decode_continuation decodes them); vLLM loads a
    # tokenizer only for its own bookkeeping (EOS, the chat template it warms up): the model dir's, which
    # train_full.py and export.py write (vLLM logs errors while it reads --tokenizer_dir, which has no
    # config.json), else --tokenizer_dir
    own = os.path.exists(os.path.join(args.model_dir, "tokenizer_config.json"))
    llm = LLM(model=args.model_dir, tokenizer=args.model_dir if own else args.tokenizer_dir, dtype=dtype,
              seed=args.seed, tensor_parallel_size=args.tensor_parallel_size, max_model_len=args.max_model_len)
    engine = llm.llm_engine.vllm_config
    device = engine.device_config.device_type
    settings = {"device": str(device), "dtype": str(engine.model_config.dtype).replace("torch.", ""),
                "tensor_parallel_size": args.tensor_parallel_size, "max_model_len": engine.model_config.max_model_len,
                "reproducible": REPRODUCIBLE["cpu" if device == "cpu" else "other"]}
    return llm, settings


def generate_vllm(llm, tokenizer, instructions, n=1, max_new_tokens=512, temperature=0.0, top_p=0.95):
    """n result dicts per instruction (instruction-major order), as generation.generate() makes them."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from reasoning_sft.serve.decoding import decode_continuation, prompt_token_ids, stop_ids

    stops = stop_ids(tokenizer)
    params = SamplingParams(n=n, max_tokens=max_new_tokens, stop_token_ids=stops, detokenize=False,
                            skip_special_tokens=False,
                            **(dict(temperature=temperature, top_p=top_p, top_k=0) if temperature > 0
                               else dict(temperature=0.0)))
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in prompt_token_ids(tokenizer, instructions)]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    results = []
    for out in outputs:
        for completion in sorted(out.outputs, key=lambda c: c.index):
            ids = list(completion.token_ids)
            # the stop token ends the ids (vLLM leaves out only its text); put it back should a build drop it
            stop = completion.stop_reason
            if completion.finish_reason == "stop" and stop in stops and ids[-1:] != [stop]:
                ids.append(stop)
            results.append(decode_continuation(tokenizer, ids))
    return results

"""LoRA fine-tuning (QLoRA with --load_in_4bit); the new tag rows of embedding and head train too.

    accelerate launch --config_file configs/cpu.yaml training/train_peft.py \
        --model_name demo_out/tiny-llama --tokenizer_dir demo_out/tokenizer \
        --train_dir demo_out/encoded/arrow_dataset --output_dir demo_out/lora \
        --batch_tokens 2048 --epochs 1 --lora_r 16 --lora_alpha 32 --lr 2e-4

Ends with OUTPUT_DIR holding the adapter (PeftModel.from_pretrained) and the tokenizer;
--merge_lora also writes OUTPUT_DIR/merged, the serving directory that export.py writes (merged
weights, tokenizer, stop tokens; no GGUF): `python export.py --model_dir OUTPUT_DIR` does the same later.
"""

import os

from reasoning_sft.artifacts import load_tokenizer_files
from reasoning_sft.errors import run_cli
from reasoning_sft.serve.export import write_serving_dir
from reasoning_sft.train import planning
from reasoning_sft.train.loop import Mode, adamw, common_parser, param_groups, run
from reasoning_sft.train.modeling import lora_model, lora_target_names, merge_lora


def parse_args(argv):
    p = common_parser(__doc__)
    p.add_argument("--lora_r", type=int, default=16)
    p.add_argument("--lora_alpha", type=int, default=32)
    p.add_argument("--lora_dropout", type=float, default=0.0,
                   help="dropout on the adapters' input; any p > 0 keeps a dropped copy of each adapted layer's "
                        "input for backward (measured on a 1.1B model, 16k tokens a step: "
                        "0.05 cost 6 GiB and 9%% speed)")
    p.add_argument("--lora_target_modules", default="all-linear",
                   help="comma-separated names of linear layers (e.g. q_proj,v_proj). Default all-linear: every "
                        "linear layer of the model but its output head, as the model has them (Llama, Qwen, "
                        "Mistral: q/k/v/o_proj, gate/up/down_proj; StarCoder2: q/k/v/o_proj, c_fc, c_proj). "
                        "The names taken are logged and written to train_config.json")
    p.add_argument("--load_in_4bit", action="store_true", help="QLoRA: 4-bit NF4 base weights (bitsandbytes)")
    p.add_argument("--merge_lora", action="store_true",
                   help="also write the serving directory (as export.py does) to OUTPUT_DIR/merged")
    p.set_defaults(lr=2e-4)
    return p.parse_args(argv)


def build_model(args, model, tag_rows):
    if args.load_in_4bit:
        from peft import prepare_model_for_kbit_training
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    targets = args.lora_target_modules
    targets = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    return lora_model(model, tag_rows, args.lora_r, args.lora_alpha, args.lora_dropout, targets)


def build_optimizer(args, model):
    return adamw(param_groups(model, args.weight_decay), args.lr)


def save_final(args, model, state_dict, accelerator):
    if accelerator.is_main_process:
        # peft keeps the adapter part. It would also store whole copies of the resized embedding and
        # head ("auto" does when the vocabulary grew: two 32023 x 4096 matrices for CodeLlama-7B); the
        # trained tag rows are already in the adapter, and every other row is the base model's.
        model.save_pretrained(args.output_dir, state_dict=state_dict, save_embedding_layers=False)
        if args.merge_lora:  # the export stage's serving directory, written by its code (export.py)
            tokenizer = load_tokenizer_files(args.tokenizer_dir)
            write_serving_dir(merge_lora(model, tokenizer), tokenizer,
                              os.path.join(args.output_dir, "merged"), args.output_dir, "lora",
                              base_model=args.model_name, overwrite=True)
    accelerator.wait_for_everyone()


def describe_model(model):
    """What train_config.json records of the LoRA model: the layers that carry adapters, by name."""
    return {"lora_target_modules": lora_target_names(model)}


LORA = Mode("lora", build_model, build_optimizer, save_final, describe_model)


def main(argv=None, callbacks=()):
    args = parse_args(argv)
    if args.plan:  # peak memory per category and the verdict, on fake tensors; nothing loaded or written
        return planning.main(args, LORA)
    run(args, LORA, preflight=planning.preflight, callbacks=callbacks)
    return 0


if __name__ == "__main__":
    run_cli(main)

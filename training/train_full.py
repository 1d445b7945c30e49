"""Full fine-tuning (all weights), optionally with bitsandbytes' 8-bit AdamW.

    accelerate launch --config_file configs/cpu.yaml --main_process_port 25001 training/train_full.py \
        --model_name demo_out/tiny-llama --tokenizer_dir demo_out/tokenizer \
        --train_dir demo_out/encoded/arrow_dataset --output_dir demo_out/full \
        --batch_tokens 2048 --epochs 1 --adam8bit

Ends with OUTPUT_DIR loadable by AutoModelForCausalLM.from_pretrained, plus the tokenizer.
For 13B-class models use configs/fsdp_full_shard.yaml.
"""

from reasoning_sft.errors import run_cli
from reasoning_sft.train import planning
from reasoning_sft.train.loop import Mode, adamw, common_parser, param_groups, run


def parse_args(argv):
    p = common_parser(__doc__)
    p.add_argument("--adam8bit", action="store_true", help="8-bit AdamW state (bitsandbytes): 2 bytes/param, not 8")
    return p.parse_args(argv)


def build_model(args, model, tag_rows):
    return model  # every weight trains, the new rows included


def build_optimizer(args, model):
    groups = param_groups(model, args.weight_decay)
    if args.adam8bit:
        import bitsandbytes as bnb
        return bnb.optim.AdamW8bit(groups, lr=args.lr)
    return adamw(groups, args.lr)


def save_final(args, model, state_dict, accelerator):
    model.save_pretrained(args.output_dir, state_dict=state_dict, is_main_process=accelerator.is_main_process,
                          save_function=accelerator.save)
    accelerator.wait_for_everyone()


FULL = Mode("full", build_model, build_optimizer, save_final)


def main(argv=None, callbacks=()):
    args = parse_args(argv)
    if args.plan:  # peak memory per category and the verdict, on fake tensors; nothing loaded or written
        return planning.main(args, FULL)
    run(args, FULL, preflight=planning.preflight, callbacks=callbacks)
    return 0


if __name__ == "__main__":
    run_cli(main)

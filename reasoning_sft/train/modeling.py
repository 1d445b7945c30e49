"""Loading models: new-token rows, LoRA with trainable tag rows, the chunked-loss wrapper.

The wrapper's forward runs the decoder and then the output head only at positions that
carry a label, chunk by chunk, computing each chunk's loss and its gradients at once
(fused_head.py) instead of storing logits: a 16k-token micro-batch with a 32k vocabulary
never holds 2 GB of fp32 logits, and the head runs once. It is one module, so DDP and FSDP
see the whole computation inside forward() (FSDP materializes the head's weight there).
"""

import os

PROFILE_LOSS_HEAD = "sft:loss_head"  # torch.profiler label of the fused loss head's forward+backward

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from reasoning_sft.data.template import tag_ids
from reasoning_sft.data.tokenizer import PAD_TOKEN
from reasoning_sft.errors import UserError
from reasoning_sft.train.fused_head import fused_linear_cross_entropy, head_weight_and_bias

# The output head runs on chunks of labelled positions; a chunk's fp32 logits [rows, vocabulary] take at most
# this many bytes, whatever the vocabulary: 4,096 rows at CodeLlama's 32k (as before), 768 at Qwen's 152k, where
# 4,096 rows would be 2.5 GB. In bf16 the chunk's logits also exist once in the compute dtype (half again).
LOSS_CHUNK_BYTES = 512 * 2 ** 20
CHUNK_ALIGN = 128  # rows: a multiple of 128 keeps the head's matmuls on whole tiles
N_SECTIONS = 5     # prompt, reasoning, intention, code, eos (see template.section_ids)


def loss_chunk_rows(vocab_rows, budget_bytes=LOSS_CHUNK_BYTES):
    """Positions per head chunk whose fp32 logits [rows, vocab_rows] fit budget_bytes (at least 1 row)."""
    rows = max(1, budget_bytes // (4 * vocab_rows))
    return rows - rows % CHUNK_ALIGN if rows >= CHUNK_ALIGN else rows


def load_causal_lm(model_name, dtype=None, flash_attn=False, load_in_4bit=False, for_generation=False, weights=True):
    """flash_attn: packed-row training through the varlen kernel (reasoning_sft.train.attention); with
    for_generation (padded, cached decoding), flash_attention_2 where flash-attn runs, else sdpa.
    weights=False: the model built from its config.json alone, nothing else read (--plan builds it
    under FakeTensorMode: shapes and dtypes, no storage)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if os.path.isfile(os.path.join(model_name, "adapter_config.json")) and \
            not os.path.isfile(os.path.join(model_name, "config.json")):
        # transformers would quietly load base + adapter, without the resized tag rows
        raise UserError(f"{model_name} is a LoRA adapter, not a model: give the base model here "
                        "(to generate with the adapter: generate.py --adapter_dir)")
    kwargs = {}
    if flash_attn:
        from reasoning_sft.train import attention
        kernel = attention.select_kernel()  # or one line saying what to install
        kwargs["attn_implementation"] = (attention.generation_attention(kernel) if for_generation
                                         else attention.install(kernel))
        # generation runs in the kernel's dtype; training in the precision policy's (fp32 weights: q/k/v
        # reach the kernel in bf16, attention.varlen_attention_forward casts them)
        dtype = (kernel.dtype or dtype) if for_generation else (dtype or kernel.dtype)
    else:
        kwargs["attn_implementation"] = "sdpa"
    if load_in_4bit:
        from transformers import BitsAndBytesConfig
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    try:
        if not weights:
            config = AutoConfig.from_pretrained(model_name)
            return AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32, **kwargs)
        return AutoModelForCausalLM.from_pretrained(model_name, dtype=dtype or torch.float32, **kwargs)
    except (OSError, ValueError) as err:  # not found / not a model directory transformers knows
        raise UserError(f"cannot load a model from {model_name!r}: {str(err).splitlines()[0]}") from None


TAG_IDS_KEY = "reasoning_sft_tag_ids"  # in config.json of a model whose tag rows were trained here


def mark_tag_rows_trained(model, tokenizer):
    """Record in the model's config that its tag rows are trained, so that a later run on it keeps them."""
    setattr(model.config, TAG_IDS_KEY, tag_ids(tokenizer))


@torch.no_grad()
def resize_and_init_new_tokens(model, tokenizer):
    """Resize to the tokenizer; tag rows = mean of their name's word pieces; our pad row = 0.

    Random rows (transformers' default samples them) would make the first steps learn to
    undo noise; "<code>" starting near the embedding of "code" gives the model a head start.
    A tag's row is untrained when the resize creates it, and also when the model already had
    a row at that id: some models pad their embedding past the vocabulary to a round size
    (deepseek-coder does), and stage 1 gives the tags those spare ids. Only a model that
    this project trained (its config carries TAG_IDS_KEY with the same ids) keeps its rows.
    Returns the ids of the tag rows, which LoRA must train.
    """
    tags = tag_ids(tokenizer)
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:  # never shrink: spare rows may be what the model's kernels expect
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    trained = getattr(model.config, TAG_IDS_KEY, None) == tags
    tables = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not tables[0]:  # tied heads share one Parameter
        tables.append(head.weight)
    for tag, tag_id in tags.items():
        if tag_id >= rows or not trained:
            pieces = tokenizer(tag.strip("</>"), add_special_tokens=False)["input_ids"]
            for table in tables:
                table[tag_id] = table[pieces].float().mean(0).to(table.dtype)
    pad = tokenizer.pad_token_id
    if tokenizer.pad_token == PAD_TOKEN and (pad >= rows or not trained):
        for table in tables:
            table[pad] = 0
    return sorted(tags.values())


def decoder_and_head(model):
    """The decoder stack and the output head of a (possibly LoRA-wrapped) causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def _chunk_loss(head, hidden, targets):
    logits = head(hidden).float()
    return F.cross_entropy(logits, targets, reduction="none")


class ChunkedLossLM(torch.nn.Module):
    """forward(batch) -> (sum of target-token losses, per-section loss sums [5]).

    Returns sums, not means: the training loop divides by the global target-token count of
    the optimizer step, across micro-batches and processes (one token mean, not a mean of means).
    chunk: positions per head chunk; None sizes it by bytes from the vocabulary (loss_chunk_rows).
    rows_only: under LoRA, build the head's gradient at its trainable rows only (False: for the whole
    head, as before; benchmarks/bench_loss_memory.py --lora measures both).
    """

    def __init__(self, model, chunk=None, rows_only=True):
        super().__init__()
        self.model = model
        self.chunk = chunk
        self.rows_only = rows_only

    def chunk_rows(self, vocab_rows):
        return self.chunk or loss_chunk_rows(vocab_rows)

    # What accelerate's FSDP asks of the module it prepares (this wrapper), answered by the model: the
    # classes a wrap unit may not split (TRANSFORMER_BASED_WRAP without a class list wraps each of them, so
    # the config names none), and the embedding and head (FSDP2 gives them units of their own).
    @property
    def _no_split_modules(self):
        return getattr(self.model, "_no_split_modules", None)

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def get_output_embeddings(self):
        return self.model.get_output_embeddings()

    def forward(self, input_ids, targets, sections, attention_mask=None, position_ids=None):
        decoder, head = decoder_and_head(self.model)
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=False).last_hidden_state
        keep = targets != -100
        if not keep.any():
            # a filler batch (see batching.empty_batch): zero loss that still reaches every
            # parameter, so DDP's gradient all-reduce on this rank matches the others
            return head(hidden[:, :1]).float().sum() * 0.0, hidden.new_zeros(N_SECTIONS, dtype=torch.float32)
        # hidden[keep] by its positions: the same rows, and under --plan (fake hidden states, real
        # targets) a size known from the targets, where a boolean mask on a fake tensor has none
        positions = keep.reshape(-1).nonzero().squeeze(1)
        hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions.to(hidden.device))
        targets, sections = targets[keep], sections[keep]
        if self.training and torch.is_grad_enabled():
            with torch.profiler.record_function(PROFILE_LOSS_HEAD):  # a label for profilers; free without one
                loss_sum, token_loss = self._loss_with_gradients(head, hidden, targets)
        else:
            chunk = self.chunk_rows(vocab_rows(self.model))
            token_loss = torch.cat([_chunk_loss(head, hidden[i:i + chunk], targets[i:i + chunk])
                                    for i in range(0, targets.numel(), chunk)])
            loss_sum = token_loss.sum()
        per_section = token_loss.new_zeros(N_SECTIONS, dtype=torch.float32)
        per_section.index_add_(0, sections.long(), token_loss.detach())
        return loss_sum, per_section

    def _loss_with_gradients(self, head, hidden, targets):
        """(sum of token losses, to back-propagate; the token losses, detached)."""
        linear = head_weight_and_bias(head, hidden[:1])
        if linear is not None:  # fused head + loss: one pass, gradients computed in forward
            weight, bias = linear
            chunk = self.chunk_rows(weight.shape[0])
            rows = trainable_head_rows(head) if self.rows_only else None
            if rows is not None:  # LoRA's tag rows: a [tags, d] gradient, not a [vocabulary, d] one
                ids, row_weight = rows
                return fused_linear_cross_entropy(hidden, weight.detach(), bias, targets, chunk,
                                                  torch.tensor(ids, device=hidden.device), row_weight)
            return fused_linear_cross_entropy(hidden, weight, bias, targets, chunk)
        # any other head (LoRA on lm_head, a quantized head): each chunk's logits recomputed in backward
        chunk = self.chunk_rows(vocab_rows(self.model))
        token_loss = torch.cat([checkpoint(_chunk_loss, head, hidden[i:i + chunk], targets[i:i + chunk],
                                           use_reentrant=False) for i in range(0, targets.numel(), chunk)])
        return token_loss.sum(), token_loss.detach()


def vocab_rows(model):
    """Rows of the (possibly LoRA-wrapped) model's embedding matrix: the head's output size."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_input_embeddings().weight.shape[0]


def trainable_head_rows(head):
    """(row ids, the Parameter that holds them) when only those rows of the head's weight train; else None.

    That is peft's trainable-token wrapper on a frozen head (LoRA's tag rows; on a tied model the head's
    wrapper shares the embedding's rows): the head's weight is the frozen matrix with these rows copied
    in, so the loss's gradient is needed at these rows only.
    """
    adapter = getattr(head, "token_adapter", None)
    if adapter is None or adapter.merged or adapter.disable_adapters or len(adapter.active_adapters) != 1:
        return None
    if adapter.base_layer.weight.requires_grad:  # the whole matrix trains: its full gradient is needed
        return None
    name = adapter.active_adapters[0]
    return list(adapter.token_indices[name]), adapter.trainable_tokens_delta[name]


def has_tied_head(model):
    """Whether the output head multiplies by the input embedding's own Parameter (tie_word_embeddings)."""
    head = model.get_output_embeddings()
    return head is not None and head.weight is model.get_input_embeddings().weight


def lora_model(model, tag_rows, r, alpha, dropout, target_modules):
    """LoRA on the decoder's linear layers; the tag rows of the input embedding and the output head train too.

    target_modules "all-linear" is resolved by peft from the model itself: every linear layer but the
    output head (get_output_embeddings()), so Llama/Qwen/Mistral's q/k/v/o/gate/up/down_proj and
    StarCoder2's q/k/v/o_proj + c_fc/c_proj; lora_target_names() says which it took. The embedding and
    head are found by asking the model, not by name. On a tied model (one Parameter for both) each tag
    trains one row, shared by embedding and head (peft's ensure_weight_tying), so the merged model stays
    tied; untied, each matrix trains its own tag rows.
    """
    from peft import LoraConfig, get_peft_model

    if not isinstance(target_modules, str):  # names: each must be a linear layer's (peft skips one that is not)
        layers = linear_layer_names(model, full=True)
        unknown = [t for t in target_modules if not any(n == t or n.endswith("." + t) for n in layers)]
        if unknown or not target_modules:
            raise UserError(f"--lora_target_modules: {','.join(unknown) or 'no names'} not in this model; its "
                            f"linear layers are {','.join(linear_layer_names(model))}")
    names = {module: name for name, module in model.named_modules()}
    tables = [names[model.get_input_embeddings()]]
    if model.get_output_embeddings() is not None:
        tables.append(names[model.get_output_embeddings()])
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, task_type="CAUSAL_LM",
                        target_modules=target_modules, trainable_token_indices=dict.fromkeys(tables, tag_rows),
                        ensure_weight_tying=has_tied_head(model))
    return get_peft_model(model, config)


def linear_layer_names(model, full=False):
    """The distinct names (last part; full=True: whole paths) of the linear layers before the output head:
    what --lora_target_modules can name (a 4-bit layer is a torch.nn.Linear too)."""
    head = model.get_output_embeddings()
    return sorted({name if full else name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not head})


def lora_target_names(model):
    """The distinct names (last part) of the layers that carry LoRA adapters in a peft model."""
    from peft.tuners.lora import LoraLayer

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, LoraLayer)})


def merge_lora(model, tokenizer):
    """The one merge path (train_peft.py --merge_lora and export.py): a LoRA model -> plain full weights.

    The adapters and the trained tag rows are folded in, and the result records that its tag rows are
    trained (mark_tag_rows_trained), so that a later run on the merged model keeps them. A tied model
    stays tied: one matrix, embedding and head equal (checked: an untied export would not serve what was
    trained).
    """
    merged = model.merge_and_unload()
    mark_tag_rows_trained(merged, tokenizer)
    text_config = merged.config.get_text_config()
    if getattr(text_config, "tie_word_embeddings", False) and not has_tied_head(merged):
        raise RuntimeError("merging the LoRA adapter untied the embedding from the head of a tied model")
    return merged


def load_for_inference(model_name, tokenizer, adapter_dir=None, model_dir=None, dtype=None, flash_attn=False):
    """A model ready to generate: fine-tuned full weights, or base + LoRA adapter."""
    if model_dir:
        return load_causal_lm(model_dir, dtype=dtype, flash_attn=flash_attn, for_generation=True).eval()
    model = load_causal_lm(model_name, dtype=dtype, flash_attn=flash_attn, for_generation=True)
    resize_and_init_new_tokens(model, tokenizer)
    if adapter_dir:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter_dir)
    return model.eval()

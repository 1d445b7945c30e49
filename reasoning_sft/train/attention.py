"""`--flash_attn`: a varlen attention kernel plugged into transformers, so packed rows cost no dense mask.

A packed micro-batch is one row `input_ids [1, T]` whose `position_ids` restart at 0 at each
sequence (batching.collate). Here a transformers attention function (registered through its
`AttentionInterface` as ATTN_IMPLEMENTATION) turns those positions into `cu_seqlens` and the
longest length, and hands the flattened q/k/v to a varlen kernel that attends causally within
each sequence only. Which kernel, in this order:

1. the flash-attn package (`flash_attn_varlen_func`), where it imports and CUDA is there;
2. PyTorch's own `torch.nn.attention.varlen.varlen_attn` (CUDA builds of torch >= 2.10; nothing
   to install beyond torch). Its keywords moved between releases (2.10: `is_causal=`; later:
   `window_size=(-1, 0)`, then `enable_gqa=`), so they are read from its signature at run time;
   where it has no `enable_gqa`, KV heads are repeated for grouped-query attention.

Where neither exists (CPU, an older torch) select_kernel() raises one line with the install
hint: `--flash_attn` never falls back to padded sdpa silently.

A kernel is `run(q, k, v, cu_seqlens, max_seqlen, scale) -> out` with q `[T, Hq, D]`, k and v
`[T, Hkv, D]` (Hkv may divide Hq), cu_seqlens int32 `[n + 1]`, causal. The hook for tests and
the GPU check's smoke mode is `kernel_override(reference_kernel())`: the same plumbing, with a
per-sequence sdpa loop as the kernel (exact, slow, any device and dtype).
"""

import contextlib
import importlib.util
import inspect
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from reasoning_sft.errors import UserError

ATTN_IMPLEMENTATION = "reasoning_sft_varlen"  # the name transformers' config carries
INSTALL_HINT = ("a CUDA build of torch >= 2.10 (torch.nn.attention.varlen) or the flash-attn package: "
                "pip install -r requirements-gpu.txt --no-build-isolation")


@dataclass(frozen=True)
class Kernel:
    name: str          # "flash-attn", "torch-varlen", "reference"
    description: str   # for the log: what runs, which version
    run: Callable      # (q, k, v, cu_seqlens, max_seqlen, scale) -> out, causal
    dtype: torch.dtype = None  # the dtype the model must be loaded in (None: as requested)


# ---------------------------------------------------------------- the kernels

def flash_attn_kernel():
    import flash_attn
    from flash_attn import flash_attn_varlen_func

    def run(q, k, v, cu_seqlens, max_seqlen, scale):
        return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, dropout_p=0.0,
                                      softmax_scale=scale, causal=True)  # GQA natively

    return Kernel("flash-attn", f"flash-attn {flash_attn.__version__} flash_attn_varlen_func", run, torch.bfloat16)


def torch_varlen_kernel(varlen_attn=None):
    """PyTorch's varlen_attn, called with the keywords its signature has (they differ between releases)."""
    if varlen_attn is None:
        from torch.nn.attention.varlen import varlen_attn
    params = inspect.signature(varlen_attn).parameters
    if "is_causal" in params:             # 2.10
        causal = {"is_causal": True}
    elif "window_size" in params:         # 2.11+: (-1, 0) is causal
        causal = {"window_size": (-1, 0)}
    else:
        raise UserError(f"torch {torch.__version__}: varlen_attn has neither is_causal nor window_size; "
                        f"--flash_attn needs {INSTALL_HINT}")
    native_gqa = "enable_gqa" in params
    has_scale = "scale" in params

    def run(q, k, v, cu_seqlens, max_seqlen, scale):
        kwargs = dict(causal)
        if k.shape[1] != q.shape[1]:
            if native_gqa:
                kwargs["enable_gqa"] = True
            else:  # query head i reads KV head i // group, as transformers' repeat_kv
                group = q.shape[1] // k.shape[1]
                k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        if has_scale:
            kwargs["scale"] = scale
        elif scale is not None:  # the kernel scales by 1/sqrt(D): fold the rest into q
            q = q * (scale * math.sqrt(q.shape[-1]))
        return varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, **kwargs)

    gqa = "native GQA" if native_gqa else "GQA by repeating KV heads"
    return Kernel("torch-varlen", f"torch {torch.__version__} torch.nn.attention.varlen.varlen_attn "
                                  f"({', '.join(f'{k}={v}' for k, v in causal.items())}, {gqa})", run, torch.bfloat16)


def reference_varlen(q, k, v, cu_seqlens, max_seqlen, scale):
    """Exact causal attention one sequence at a time (sdpa): the kernel contract, on any device."""
    out = torch.empty_like(q)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        # [s, H, D] -> [1, H, s, D]
        qs, ks, vs = (x[start:end].transpose(0, 1)[None] for x in (q, k, v))
        o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale,
                                           enable_gqa=ks.shape[1] != qs.shape[1])
        out[start:end] = o[0].transpose(0, 1)
    return out


def reference_kernel():
    return Kernel("reference", "reference varlen (per-sequence sdpa; for tests, not speed)", reference_varlen)


_override = None


@contextlib.contextmanager
def kernel_override(kernel):
    """Make select_kernel() return `kernel` (tests and the GPU check's --smoke run the plumbing on CPU)."""
    global _override
    previous, _override = _override, kernel
    try:
        yield kernel
    finally:
        _override = previous


def select_kernel():
    """The varlen kernel --flash_attn runs here, or one line saying what to install."""
    if _override is not None:
        return _override
    if not torch.cuda.is_available():
        raise UserError(f"--flash_attn needs a CUDA GPU (torch {torch.__version__} sees none) and {INSTALL_HINT}")
    if importlib.util.find_spec("flash_attn") is not None:
        try:
            return flash_attn_kernel()
        except ImportError:  # installed but built for another torch/CUDA: PyTorch's kernel may still do
            pass
    try:
        return torch_varlen_kernel()
    except ImportError:
        raise UserError(f"--flash_attn: torch {torch.__version__} has no varlen attention and flash-attn is not "
                        f"importable; install {INSTALL_HINT}") from None


# ---------------------------------------------------------------- the transformers side

_installed = None     # the kernel behind ATTN_IMPLEMENTATION
# [(position_ids tensor, (batch, length), cu_seqlens, max_seqlen)]: one per forward, shared by all layers
_seqlens_cache = []


def install(kernel):
    """Register ATTN_IMPLEMENTATION with transformers, running `kernel`; returns the name to load a model with.

    Its mask function is flash-attention's: no dense mask, None when nothing is padded, the 2-D
    padding mask otherwise (a custom name without one would drop a padding mask silently).
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    global _installed
    _installed = kernel
    AttentionInterface.register(ATTN_IMPLEMENTATION, varlen_attention_forward)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, flash_attention_mask)
    return ATTN_IMPLEMENTATION


def seqlens_from_positions(position_ids, batch, length, device):
    """cu_seqlens (int32) and the longest length of the sequences in rows of `length` tokens.

    A sequence starts at each row start and wherever a position is not its predecessor + 1
    (collate's positions restart at 0). Computed once per forward: every layer gets the same
    position_ids tensor, and the longest length costs a device sync.
    """
    if position_ids is None:  # one sequence per row
        starts = torch.arange(0, batch * length, length, device=device)
        return torch.cat([starts, starts.new_tensor([batch * length])]).to(torch.int32), length
    for cached, shape, cu_seqlens, longest in _seqlens_cache:
        if cached is position_ids and shape == (batch, length):
            return cu_seqlens, longest
    flat = position_ids.expand(batch, length).reshape(-1).to(device)
    new = torch.ones_like(flat, dtype=torch.bool)
    new[1:] = flat[1:] != flat[:-1] + 1
    new[::length] = True
    starts = new.nonzero().squeeze(1)
    cu_seqlens = torch.cat([starts, starts.new_tensor([batch * length])]).to(torch.int32)
    longest = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    _seqlens_cache[:] = [(position_ids, (batch, length), cu_seqlens, longest)]
    return cu_seqlens, longest


def _compute_dtype(query, kernel):
    """The dtype q/k/v must have for the kernel (under autocast, or with fp32 LoRA layers, q may be fp32)."""
    if kernel.dtype is None or query.dtype in (torch.float16, torch.bfloat16):
        return query.dtype
    if torch.is_autocast_enabled(query.device.type):
        return torch.get_autocast_dtype(query.device.type)
    return kernel.dtype


def varlen_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                             position_ids=None, **kwargs):
    """transformers' attention-function contract: q [b, Hq, s, D], k/v [b, Hkv, s, D] -> ([b, s, Hq, D], None)."""
    kernel = _installed
    batch, heads, length, dim = query.shape
    if key.shape[2] != length:
        raise ValueError(f"{ATTN_IMPLEMENTATION} is for training (no KV cache): generation loads sdpa or "
                         "flash_attention_2 (modeling.load_for_inference)")
    if dropout:
        raise ValueError(f"{ATTN_IMPLEMENTATION}: attention dropout is not supported (the config has {dropout})")
    if not getattr(module, "is_causal", True):
        raise ValueError(f"{ATTN_IMPLEMENTATION} is causal only; {type(module).__name__} is not causal")
    in_dtype, dtype = query.dtype, _compute_dtype(query, kernel)
    q, k, v = (x.transpose(1, 2).reshape(batch * length, x.shape[1], dim).to(dtype) for x in (query, key, value))
    if attention_mask is not None:  # padded rows, one sequence each: keep the real tokens only
        keep = attention_mask.reshape(-1).nonzero().squeeze(1)
        lengths = attention_mask.sum(1)
        cu_seqlens = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
        real = kernel.run(q[keep], k[keep], v[keep], cu_seqlens, int(lengths.max()), scaling)
        out = real.new_zeros(batch * length, heads, dim).index_copy_(0, keep, real)
    else:
        if kwargs.get("cu_seq_lens_q") is not None:  # given by the caller (transformers' FlashAttentionKwargs)
            cu_seqlens, longest = kwargs["cu_seq_lens_q"].to(torch.int32), int(kwargs["max_length_q"])
        else:
            cu_seqlens, longest = seqlens_from_positions(position_ids, batch, length, query.device)
        out = kernel.run(q, k, v, cu_seqlens, longest, scaling)
    return out.reshape(batch, length, heads, dim).to(in_dtype), None


def generation_attention(kernel):
    """attn_implementation for generate.py's padded, cached decoding under --flash_attn.

    The varlen function has no KV cache; decoding uses transformers' flash_attention_2 where
    the flash-attn package runs, else sdpa (in bf16, whose CUDA flash backend serves the
    unmasked steps; left-padded prompts get a mask).
    """
    return "flash_attention_2" if kernel.name == "flash-attn" else "sdpa"


def describe(model):
    """For the first log lines: which attention runs in `model`."""
    name = getattr(model.config, "_attn_implementation", None)
    if name == ATTN_IMPLEMENTATION and _installed is not None:
        return f"varlen {_installed.description}"
    return str(name)

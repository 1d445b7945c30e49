"""The output head and the cross-entropy in one pass: loss and gradients in forward, no recomputation.

For each chunk of labelled positions the forward computes the logits [chunk, V] in fp32,
the token losses, and right away d(loss)/d(logits) = softmax - one_hot, which it turns into
this chunk's gradients w.r.t. the hidden states and the head's weight (and bias). The
logits are then dropped; what is kept is grad_hidden [n, d] and grad_weight [V, d]
(accumulated in fp32 across chunks). backward() only multiplies them by grad_output, as
Liger's fused linear cross-entropy does. So the head runs once (three matmuls per chunk,
as a plain forward + backward would) instead of four with activation-checkpoint recompute,
and memory stays bounded by one chunk's logits.

The head's weight enters as an autograd input, so a tied head sends grad_weight into the shared
embedding Parameter. Under LoRA only a few rows of the head train (peft's effective weight is the
frozen matrix with the trainable tag rows copied in): the caller then passes the weight detached
plus `rows` and `row_weight` (the Parameter holding those rows), and the gradient kept is
[len(rows), d], not a [V, d] fp32 matrix (2 GB at Qwen-7B's 152k x 3584) for six rows.
"""

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class _LinearCalls(TorchFunctionMode):
    """Records the F.linear calls made while active: (input, weight, bias)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            named = dict(zip(("input", "weight", "bias"), args), **kwargs)  # peft passes them by name
            self.calls.append((named["input"], named["weight"], named.get("bias")))
        return func(*args, **kwargs)


def head_weight_and_bias(head, probe):
    """(weight, bias) that the head multiplies its input by, as autograd tensors; None if it is not one linear map.

    The head runs once on `probe` (one row) while its F.linear calls are recorded. A plain
    nn.Linear, peft's trainable-token wrapper (its forward is F.linear(x, merged weight)) and
    a tied head all make exactly one call on the probe itself. Anything else (LoRA on the
    head: three calls; a quantized head: none) gets None and the caller falls back.
    """
    recorder = _LinearCalls()
    with recorder:
        out = head(probe)
    if len(recorder.calls) != 1:
        return None
    x, weight, bias = recorder.calls[0]
    if x is not probe or not torch.is_tensor(out) or not weight.is_floating_point() or weight.dim() != 2:
        return None
    return weight, bias


class FusedLinearCrossEntropy(torch.autograd.Function):
    """(hidden [n, d], weight [V, d], bias [V] | None, targets [n], chunk, rows [k] | None, row_weight [k, d] | None)
    -> (loss sum, token losses [n] detached). row_weight's gradient is the loss's gradient at weight[rows]."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk, rows=None, row_weight=None):
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        need_r = row_weight is not None and ctx.needs_input_grad[6]
        ctx.weight_dtype, ctx.bias_dtype = weight.dtype, (bias.dtype if bias is not None else None)
        ctx.row_dtype = row_weight.dtype if row_weight is not None else None
        grad_hidden = torch.empty_like(hidden) if need_h else None
        # new_zeros/new_empty, not torch.zeros(device=...): on --plan's fake tensors these stay fake
        grad_weight = weight.new_zeros(weight.shape, dtype=torch.float32) if need_w else None
        grad_bias = bias.new_zeros(bias.shape, dtype=torch.float32) if need_b else None
        grad_rows = row_weight.new_zeros(row_weight.shape, dtype=torch.float32) if need_r else None
        token_losses = hidden.new_empty(targets.shape[0], dtype=torch.float32)
        for start in range(0, targets.shape[0], chunk):
            h, t = hidden[start:start + chunk], targets[start:start + chunk]
            logits = F.linear(h, weight, bias).float()
            lse = torch.logsumexp(logits, dim=-1)
            token_losses[start:start + chunk] = lse - logits.gather(1, t[:, None]).squeeze(1)
            # d(sum of losses)/d(logits) = softmax - one_hot, built in the logits' buffer
            dlogits = logits.sub_(lse[:, None]).exp_()
            dlogits[torch.arange(t.shape[0], device=t.device), t] -= 1.0
            if need_b:
                grad_bias += dlogits.sum(0)
            dlogits = dlogits.to(h.dtype)
            if need_h:
                grad_hidden[start:start + chunk] = dlogits @ weight
            if need_w:
                if grad_weight.dtype == h.dtype and not torch.is_autocast_enabled(h.device.type):
                    grad_weight.addmm_(dlogits.t(), h)  # fp32: accumulate in place, no [V, d] temporary
                else:  # the matmul in the compute dtype, the sum over chunks in fp32
                    grad_weight += (dlogits.t() @ h).float()
            if need_r:  # only the trainable rows' columns of dlogits: [k, chunk] @ [chunk, d]
                grad_rows += (dlogits.index_select(1, rows).t() @ h).float()
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias, grad_rows)
        ctx.mark_non_differentiable(token_losses)
        return token_losses.sum(), token_losses

    @staticmethod
    def backward(ctx, grad_loss, _grad_token_losses):
        grad_hidden, grad_weight, grad_bias, grad_rows = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        h = grad_hidden * grad_loss.to(grad_hidden.dtype) if need_h else None
        w = (grad_weight * grad_loss).to(ctx.weight_dtype) if need_w else None
        b = (grad_bias * grad_loss).to(ctx.bias_dtype) if need_b else None
        r = (grad_rows * grad_loss).to(ctx.row_dtype) if grad_rows is not None else None
        return h, w, b, None, None, None, r


def fused_linear_cross_entropy(hidden, weight, bias, targets, chunk, rows=None, row_weight=None):
    """Sum of the token losses of F.linear(hidden, weight, bias) against targets, and the token losses (detached).

    rows, row_weight: weight[rows] is row_weight (the rows that train; weight itself is then passed
    detached), and row_weight receives their gradient."""
    return FusedLinearCrossEntropy.apply(hidden, weight, bias, targets, chunk, rows, row_weight)

"""`--precision`: the dtype the trained weights live in, and how each optimizer update is rounded into it.

bf16 weights save 2 bytes per parameter over fp32 (a 7B model on one 80 GB card needs that),
but an optimizer that rounds each new weight to the NEAREST bf16 value drops every update
smaller than half a bf16 step, about 1/256 of the weight: at lr 1e-5..2e-5 most updates vanish
(bitsandbytes' 8-bit AdamW does exactly that). The `bf16` policy keeps bf16 weights and
gradients, lets the optimizer compute each new weight in fp32, one parameter at a time (its
fp32 scratch is freed before the next), and rounds the result into bf16 stochastically: up or
down with the probabilities that make the expected weight the exact fp32 one. Small updates
then accumulate as they would in fp32 (the test and benchmarks/bench_precision.py show it).

The rounding's random bits come from one generator per optimizer step, seeded from (--seed, step)
and drawn from by the parameters in their fixed order: every data-parallel rank draws the same
bits, so replicas stay identical, and the step count is part of the optimizer's state_dict, so a
resumed run draws what the uninterrupted one did.

Policies:
    fp32          fp32 weights; the accelerate config's mixed precision (bf16 autocast on GPU configs)
    bf16          bf16 weights and gradients, updates stochastically rounded (exact in expectation)
    bf16-nearest  bf16 weights, updates rounded to nearest (small ones lost; kept to show the difference)
    auto          full fine-tuning with --flash_attn: bf16 (fp32 under FSDP, whose sharded fp32
                  masters cost 4/world bytes per parameter); without --flash_attn: fp32.
                  LoRA: bf16 base with --flash_attn, else fp32. LoRA's adapters and tag rows are fp32
                  either way (peft keeps them so); the policy sets the frozen base's dtype only.
"""

from dataclasses import dataclass, replace

import numpy as np
import torch

from reasoning_sft.errors import UserError

CHOICES = ("auto", "fp32", "bf16", "bf16-nearest")
ROUNDING_CHUNK = 1 << 24  # elements rounded at a time: bounds the random bits' scratch to 64 MB


@dataclass(frozen=True)
class Policy:
    name: str             # fp32 | bf16 | bf16-nearest
    weights: torch.dtype
    rounding: str         # how an update reaches the weights, in words (logged)
    stochastic: bool = False  # whether the optimizer is wrapped in StochasticRounding

    def summary(self, optimizer):
        """For the first log lines and train_config.json."""
        return {"policy": self.name, "weights_dtype": str(self.weights).removeprefix("torch."),
                "update_rounding": self.rounding,
                "optimizer": type(unwrap(optimizer)).__name__,
                "optimizer_state_bytes_per_param": nominal_state_bytes(optimizer, self)}


POLICIES = {
    "fp32": Policy("fp32", torch.float32, "none: fp32 weights hold every update"),
    "bf16": Policy("bf16", torch.bfloat16, "stochastic: exact in expectation (fp32 step, one parameter at a time)",
                   stochastic=True),
    "bf16-nearest": Policy("bf16-nearest", torch.bfloat16, "nearest: updates under half a bf16 step are lost"),
}


def resolve(requested, mode, flash_attn, fsdp):
    """The policy a run uses: `requested` (--precision), with `auto` decided by mode/kernel/FSDP."""
    if requested == "auto":
        requested = "fp32" if not flash_attn or (fsdp and mode == "full") else "bf16"
    if requested == "bf16" and fsdp and mode == "full":
        # FSDP's flat parameters are views the per-parameter fp32 step would replace; sharded fp32
        # masters cost only 4/world bytes per parameter there
        raise UserError("--precision bf16 is not supported under FSDP: use --precision fp32 (sharded fp32 "
                        "weights cost 4/world bytes per parameter) or bf16-nearest")
    if requested not in POLICIES:
        raise UserError(f"--precision must be one of {', '.join(CHOICES)}, not {requested!r}")
    policy = POLICIES[requested]
    if mode == "lora" and policy.weights == torch.bfloat16:  # nothing trained is bf16: nothing to round
        return replace(policy, stochastic=False,
                       rounding="none: the trained adapters and tag rows are fp32; the bf16 base is frozen")
    return policy


# ---------------------------------------------------------------- stochastic rounding

def round_stochastically_(target, value, generator):
    """target (bf16) <- value (fp32), rounded up or down so that the expected result is `value`.

    bf16 is the upper half of an fp32's bits: adding uniform random bits to the lower 16 and then
    clearing them rounds up with probability (dropped part) / (bf16 step), else down.
    """
    flat_target, flat_value = target.view(-1), value.view(-1)
    for start in range(0, flat_value.numel(), ROUNDING_CHUNK):
        bits = flat_value[start:start + ROUNDING_CHUNK].view(torch.int32)
        # randint_like: the same bits as torch.randint(..., device=bits.device), and fake under --plan
        noise = torch.randint_like(bits, 0, 1 << 16, generator=generator)
        rounded = noise.add_(bits).bitwise_and_(-65536)  # -65536 == 0xFFFF0000: keep the bf16 bits
        flat_target[start:start + ROUNDING_CHUNK].copy_(rounded.view(torch.float32))  # exact: low bits are 0


def rounding_seed(seed, step):
    """One 63-bit seed per (run seed, optimizer step), the same on every rank."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, step]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class StochasticRounding(torch.optim.Optimizer):
    """An optimizer whose bf16 parameters receive each update exactly in expectation.

    step() runs the wrapped optimizer on the non-bf16 parameters as usual (any a model keeps in
    fp32), then on each bf16 parameter alone, through an fp32 copy of its weight and gradient that
    holds its optimizer state meanwhile (the state is kept in the dtype the optimizer sees: fp32
    moments for torch's AdamW, 8-bit for bitsandbytes'); the updated copy is rounded stochastically
    back into the parameter's own storage. Only one parameter's fp32 copies exist at a time.

    Like accelerate's AcceleratedOptimizer this delegates to the wrapped optimizer instead of
    calling Optimizer.__init__; it is an Optimizer so that schedulers and accelerate accept it.
    """

    STATE_KEY = "stochastic_rounding"

    def __init__(self, optimizer, seed):
        self.optimizer = optimizer
        self.seed = seed
        self.steps = 0  # optimizer steps taken: with the seed, picks the step's random bits

    # the wrapped optimizer holds groups, state and defaults
    param_groups = property(lambda self: self.optimizer.param_groups,
                            lambda self, value: setattr(self.optimizer, "param_groups", value))
    state = property(lambda self: self.optimizer.state, lambda self, value: setattr(self.optimizer, "state", value))
    defaults = property(lambda self: self.optimizer.defaults,
                        lambda self, value: setattr(self.optimizer, "defaults", value))

    def zero_grad(self, set_to_none=True):
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {**self.optimizer.state_dict(), self.STATE_KEY: {"steps": self.steps, "seed": self.seed}}

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        ours = state_dict.pop(self.STATE_KEY, None)
        if ours is not None:
            self.steps = ours["steps"]
        self.optimizer.load_state_dict(state_dict)
        # torch's and bitsandbytes' loaders cast floating state to its parameter's dtype, bf16 here;
        # the fp32 step created it in fp32: the saved tensors go back as they were, bit for bit
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        for param_id, p in zip(saved_ids, params):
            if p.dtype != torch.bfloat16:
                continue
            for key, value in state_dict["state"].get(param_id, {}).items():
                if torch.is_tensor(value) and value.is_floating_point() and key != "step":
                    self.optimizer.state[p][key] = value.to(p.device, copy=True)

    def add_param_group(self, param_group):
        self.optimizer.add_param_group(param_group)

    def __repr__(self):
        return f"StochasticRounding({self.optimizer!r})"

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("StochasticRounding does not take a closure")
        self.steps += 1
        groups = self.optimizer.param_groups
        all_params = [group["params"] for group in groups]
        try:
            for group, params in zip(groups, all_params):
                group["params"] = [p for p in params if p.dtype != torch.bfloat16]
            self.optimizer.step()
            for group in groups:
                group["params"] = []
            generators = {}  # one a device, seeded once a step (seeding per parameter was ~10% of its step's host time)
            for group, params in zip(groups, all_params):
                for p in params:
                    if p.dtype == torch.bfloat16 and p.grad is not None:
                        if p.device not in generators:
                            generators[p.device] = torch.Generator(device=p.device)
                            generators[p.device].manual_seed(rounding_seed(self.seed, self.steps))
                        self._step_one(p, group, generators[p.device])
        finally:
            for group, params in zip(groups, all_params):
                group["params"] = params

    def _step_one(self, p, group, generator):
        """The wrapped optimizer's update of bf16 parameter `p`, computed in fp32, rounded stochastically.

        The optimizer steps an fp32 stand-in holding p's state: changing p's own dtype, even for a moment,
        would make autograd drop p's gradient accumulator, and with it DDP's all-reduce hook.
        """
        state = self.optimizer.state
        stand_in = torch.nn.Parameter(p.detach().float(), requires_grad=False)
        stand_in.grad = p.grad.float()
        if p in state:
            state[stand_in] = state.pop(p)
        group["params"] = [stand_in]
        try:
            self.optimizer.step()
        finally:
            if stand_in in state:
                state[p] = state.pop(stand_in)
            group["params"] = []
        round_stochastically_(p.data, stand_in.data, generator)


def wrap_optimizer(optimizer, policy, seed):
    """The optimizer the loop steps: wrapped for stochastic rounding under the bf16 policy."""
    return StochasticRounding(optimizer, seed) if policy.stochastic else optimizer


def unwrap(optimizer):
    """The optimizer doing the math, under accelerate's and our wrappers."""
    while hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


def nominal_state_bytes(optimizer, policy):
    """Bytes of optimizer state per trainable parameter before the first step creates it (moments only).

    bitsandbytes' 8-bit AdamW: two 1-byte moments. torch's AdamW: two moments in the dtype of the
    weights it sees: fp32 under fp32 and bf16 (the fp32 step), bf16 under bf16-nearest.
    """
    inner = unwrap(optimizer)
    if getattr(getattr(inner, "args", None), "optim_bits", None) == 8:
        return 2
    weights = {p.dtype for group in inner.param_groups for p in group["params"]}
    if policy.name == "bf16-nearest" and weights == {torch.bfloat16}:
        return 4
    return 8

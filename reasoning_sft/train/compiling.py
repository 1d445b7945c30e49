"""--compile: regional torch.compile of each decoder layer.

Compiling the decoder layer, not the whole model, keeps the compile short (one layer's graph, reused by
every layer of the same class) and leaves the loop, the loss head and accelerate's wrappers eager. Inductor
fuses the element-wise work between the matmuls: RMSNorm, RoPE, SwiGLU, the residual adds and casts.
dynamic=True: a packed row's length changes every step, and a graph per length would recompile all run.
Module.compile() compiles in place, so parameter names (checkpoints, save_pretrained) do not change.
"""

from reasoning_sft.errors import UserError


def decoder_layers(model):
    """The decoder layers of a transformers causal LM, wrapped by peft or not (classes named *DecoderLayer)."""
    return [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]


def compile_decoder_layers(model):
    """Compile each decoder layer in place; returns how many. UserError if the model has none to compile."""
    layers = decoder_layers(model)
    if not layers:
        raise UserError(f"--compile: no decoder layers (*DecoderLayer modules) found in {type(model).__name__}")
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)

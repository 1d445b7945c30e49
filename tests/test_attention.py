"""--flash_attn's varlen plumbing (reasoning_sft.train.attention), on CPU.

The real kernels (flash-attn, torch's varlen_attn) are CUDA only; benchmarks/gpu_check.py tests
them on a GPU. Here the documented hook `kernel_override` puts the reference kernel (exact causal
sdpa, one sequence at a time) behind the same transformers attention function, so everything
around the kernel is checked: registration, no dense mask, cu_seqlens from packed position_ids,
GQA, dtypes, gradients. The adapter of torch's varlen_attn is checked against each signature it
has had, with functions that compute attention honestly from the keywords they are given.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from reasoning_sft.errors import UserError
from reasoning_sft.train import attention

VOCAB = 97
LENGTHS = [7, 13, 4, 9]


class CountingKernel:
    """The reference kernel, counting its calls (so a test knows the varlen path ran)."""

    def __init__(self):
        self.calls = 0
        self.kernel = attention.Kernel("reference", "reference (counted)", self.run)

    def run(self, *args):
        self.calls += 1
        return attention.reference_varlen(*args)


def tiny_model_dir(tmp_path, heads, kv_heads):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=64)
    path = tmp_path / f"llama-{heads}-{kv_heads}"
    LlamaForCausalLM(config).save_pretrained(path)
    return str(path)


def sequences(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (n,), generator=g) for n in LENGTHS]


def token_losses(model, seq_list, packed):
    """Per-token next-token losses of each sequence (shifted within the sequence), as a flat vector."""
    if packed:
        ids = torch.cat(seq_list)[None]
        positions = torch.cat([torch.arange(len(s)) for s in seq_list])[None]
        logits = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0]
        chunks = logits.split([len(s) for s in seq_list])
    else:  # padded rows, each sequence alone in its row (sdpa with a padding mask)
        longest = max(len(s) for s in seq_list)
        ids = torch.zeros(len(seq_list), longest, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, s in enumerate(seq_list):
            ids[row, :len(s)], mask[row, :len(s)] = s, 1
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        chunks = [logits[row, :len(s)] for row, s in enumerate(seq_list)]
    return torch.cat([F.cross_entropy(c[:-1], s[1:], reduction="none") for c, s in zip(chunks, seq_list)])


def load_pair(path):
    """(sdpa model, varlen model with the counting reference kernel), same weights, fp32."""
    from reasoning_sft.train.modeling import load_causal_lm

    sdpa = load_causal_lm(path)
    counter = CountingKernel()
    with attention.kernel_override(counter.kernel):
        varlen = load_causal_lm(path, flash_attn=True)
    return sdpa, varlen, counter


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1)], ids=["MHA", "GQA", "MQA"])
def test_packed_varlen_equals_per_sequence_padded_sdpa_loss_and_gradients(tmp_path, heads, kv_heads):
    sdpa, varlen, counter = load_pair(tiny_model_dir(tmp_path, heads, kv_heads))
    assert varlen.config._attn_implementation == attention.ATTN_IMPLEMENTATION
    assert varlen.dtype == torch.float32  # the reference kernel asks for no dtype: fp32 stays fp32
    seqs = sequences()

    expected = token_losses(sdpa, seqs, packed=False)
    got = token_losses(varlen, seqs, packed=True)
    assert counter.calls == 2  # one per layer: the packed row went through the varlen function
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    expected.mean().backward()
    got.mean().backward()
    for (name, p_ref), p_var in zip(sdpa.named_parameters(), varlen.parameters()):
        torch.testing.assert_close(p_var.grad, p_ref.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_no_sequence_attends_to_another_in_a_packed_row(tmp_path):
    _, varlen, _ = load_pair(tiny_model_dir(tmp_path, 4, 2))
    seqs = sequences()
    changed = [s.clone() for s in seqs]
    changed[1] = torch.randint(3, VOCAB, (len(seqs[1]),), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        before = token_losses(varlen, seqs, packed=True).split([n - 1 for n in LENGTHS])
        after = token_losses(varlen, changed, packed=True).split([n - 1 for n in LENGTHS])
    for i in (0, 2, 3):
        assert torch.equal(before[i], after[i]), i
    assert not torch.equal(before[1], after[1])


def test_boundaries_given_by_the_caller_are_used(tmp_path):
    """transformers' FlashAttentionKwargs (cu_seq_lens_q, max_length_q) passed to forward override the positions."""
    _, varlen, _ = load_pair(tiny_model_dir(tmp_path, 4, 2))
    ids = torch.cat(sequences())[None]
    positions = torch.cat([torch.arange(n) for n in LENGTHS])[None]
    cu = torch.tensor([0] + torch.tensor(LENGTHS).cumsum(0).tolist(), dtype=torch.int32)
    with torch.no_grad():
        from_positions = varlen(input_ids=ids, position_ids=positions, use_cache=False).logits
        given = varlen(input_ids=ids, position_ids=positions, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                       max_length_q=max(LENGTHS), max_length_k=max(LENGTHS), use_cache=False).logits
        one_sequence = varlen(input_ids=ids, position_ids=positions, use_cache=False,
                              cu_seq_lens_q=torch.tensor([0, sum(LENGTHS)], dtype=torch.int32),
                              max_length_q=sum(LENGTHS)).logits
    torch.testing.assert_close(given, from_positions)
    assert not torch.allclose(one_sequence, from_positions)  # the given boundaries, not the positions, ruled


def test_padded_rows_through_the_varlen_function_keep_their_mask(tmp_path):
    """--flash_attn --packing off: the 2-D padding mask reaches the function (not dropped for a custom name)."""
    sdpa, varlen, counter = load_pair(tiny_model_dir(tmp_path, 4, 2))
    seqs = sequences()
    with torch.no_grad():
        torch.testing.assert_close(token_losses(varlen, seqs, packed=False), token_losses(sdpa, seqs, packed=False),
                                   rtol=1e-5, atol=1e-5)
    assert counter.calls == 2


def test_cu_seqlens_from_packed_position_ids():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    cu, longest = attention.seqlens_from_positions(positions, 1, 9, "cpu")
    assert cu.tolist() == [0, 3, 5, 9] and cu.dtype == torch.int32 and longest == 4
    # two rows with plain positions: a sequence per row, even where row 2 continues row 1's count
    positions = torch.tensor([[0, 1, 2], [3, 4, 5]])
    cu, longest = attention.seqlens_from_positions(positions, 2, 3, "cpu")
    assert cu.tolist() == [0, 3, 6] and longest == 3
    cu, longest = attention.seqlens_from_positions(None, 2, 5, "cpu")
    assert cu.tolist() == [0, 5, 10] and longest == 5


def causal_attention(q, k, v, cu, causal, scale=None):
    """Honest attention over [T, H, D] sequences given by cu, causal or not (a stand-in for a CUDA kernel's math)."""
    out = torch.empty_like(q)
    bounds = cu.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        qs, ks, vs = (x[start:end].transpose(0, 1) for x in (q, k, v))
        if ks.shape[0] != qs.shape[0]:
            raise ValueError("Expect query and key/value to have the same number of heads")
        scores = qs @ ks.transpose(1, 2) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
        if causal:
            n = end - start
            scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        out[start:end] = (scores.softmax(-1) @ vs).transpose(0, 1)
    return out


def varlen_2_10(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
    return causal_attention(query, key, value, cu_seq_q, is_causal)


def varlen_2_11(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                window_size=(-1, -1)):
    return causal_attention(query, key, value, cu_seq_q, tuple(window_size) == (-1, 0), scale)


def varlen_2_13(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                window_size=(-1, -1), enable_gqa=False, seqused_k=None, block_table=None, num_splits=None):
    if enable_gqa:
        group = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(group, 1), value.repeat_interleave(group, 1)
    return causal_attention(query, key, value, cu_seq_q, tuple(window_size) == (-1, 0), scale)


@pytest.mark.parametrize("varlen_attn", [varlen_2_10, varlen_2_11, varlen_2_13], ids=["2.10", "2.11", "2.13"])
def test_torch_varlen_adapter_reads_the_signature(varlen_attn):
    """Causal, GQA and a non-default scale come out right whichever keywords the release has."""
    kernel = attention.torch_varlen_kernel(varlen_attn)
    g = torch.Generator().manual_seed(0)
    cu = torch.tensor([0, 5, 12, 15], dtype=torch.int32)
    q = torch.randn(15, 4, 8, generator=g)
    k, v = torch.randn(15, 2, 8, generator=g), torch.randn(15, 2, 8, generator=g)
    for scale in (None, 1 / math.sqrt(8), 0.05):
        expected = attention.reference_varlen(q, k, v, cu, 7, scale)
        torch.testing.assert_close(kernel.run(q, k, v, cu, 7, scale), expected)


def test_without_a_kernel_flash_attn_is_one_line_with_the_install_hint():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError) as err:
        attention.select_kernel()
    message = str(err.value)
    assert "\n" not in message and "CUDA" in message
    assert "torch.nn.attention.varlen" in message and "pip install -r requirements-gpu.txt" in message


def test_generation_keeps_a_cached_attention(tmp_path):
    """generate.py --flash_attn decodes with a KV cache: sdpa (or flash_attention_2 with flash-attn), never varlen."""
    from reasoning_sft.train.modeling import load_causal_lm

    path = tiny_model_dir(tmp_path, 4, 2)
    with attention.kernel_override(attention.reference_kernel()):
        model = load_causal_lm(path, flash_attn=True, for_generation=True)
    assert model.config._attn_implementation == "sdpa"
    out = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)

"""export.py: a training output -> a serving directory that loads and prompts and stops as trained.

The engines themselves (vLLM, llama-server, the GGUF converter) are exercised by the serving
tier (tests/serving/); this module checks what transformers sees and every refusal.
"""

import json

import pytest
import torch
from conftest import leftovers, our_error_line, train_here

from reasoning_sft.data.template import TAGS, prompt_text

pytestmark = pytest.mark.slow

INSTRUCTIONS = ["Write a function that returns the sum of a list.", "Reverse a string.", "x"]


def _train(script, tiny_model_dir, tokenizer_dir, encoded_dir, out, *extra):
    """A real training output to export (in this process: the trainers' command line is tested elsewhere)."""
    assert train_here(script, "--model_name", tiny_model_dir, "--tokenizer_dir", tokenizer_dir, "--train_dir",
                      encoded_dir / "arrow_dataset", "--output_dir", out, "--max_steps", "3", "--lr", "1e-2",
                      "--batch_tokens", "2048", "--log_every", "1", *extra)[0] == 0
    return out


@pytest.fixture(scope="module")
def full_out(tmp_path_factory, tiny_model_dir, tokenizer_dir, encoded_dir):
    return _train("train_full.py", tiny_model_dir, tokenizer_dir, encoded_dir, tmp_path_factory.mktemp("x") / "full")


@pytest.fixture(scope="module")
def lora_out(tmp_path_factory, tiny_model_dir, tokenizer_dir, encoded_dir):
    return _train("train_peft.py", tiny_model_dir, tokenizer_dir, encoded_dir, tmp_path_factory.mktemp("x") / "lora",
                  "--merge_lora", "--lora_r", "4")


def _export(*args):
    import export

    return export.main([*map(str, args)])


def _logits(model_or_dir, tokenizer, text):
    from transformers import AutoModelForCausalLM

    model = model_or_dir
    if not hasattr(model, "forward"):
        model = AutoModelForCausalLM.from_pretrained(str(model_or_dir), dtype="auto")
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits.float()


def test_full_output_exports_to_a_directory_that_serves_as_trained(full_out, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out = tmp_path / "serve"
    assert _export("--model_dir", full_out, "--out_dir", out) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
            "tokenizer.model", "added_tokens.json", "generation_config.json", "README.md",
            "sft_export.json", "sft_reasoning_parser.py"} <= names
    assert leftovers(out) == ["serve"]
    tok = AutoTokenizer.from_pretrained(str(out))
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["chat_template"] == (out / "chat_template.jinja").read_text() == tok.chat_template
    added = json.loads((out / "added_tokens.json").read_text())
    assert {tag: added[tag] for tag in TAGS} == {tag: tok.convert_tokens_to_ids(tag) for tag in TAGS}
    meta = json.loads((out / "sft_export.json").read_text())
    assert meta["mode"] == "full" and meta["dtype"] == "fp32" and meta["gguf"] is None
    assert meta["reasoning_parser"] == {"file": "sft_reasoning_parser.py", "name": "reasoning_sft"}
    assert "--reasoning-parser-plugin" in (out / "README.md").read_text()  # the vLLM command uses the parser
    stops = GenerationConfig.from_pretrained(str(out)).eos_token_id
    assert stops == [tok.eos_token_id] == meta["stop_ids"]  # EOS follows </code>: generation_config.serving_stop_ids
    # the chat template gives the training prompt, and the weights are the run's
    model = AutoModelForCausalLM.from_pretrained(str(out))
    trained = AutoModelForCausalLM.from_pretrained(str(full_out))
    for instruction in INSTRUCTIONS:
        chat = tok.apply_chat_template([{"role": "user", "content": instruction}], add_generation_prompt=True,
                                       return_tensors="pt", return_dict=True)
        assert chat["input_ids"][0].tolist() == tok(prompt_text(instruction))["input_ids"]
        ours = model.generate(**chat, max_new_tokens=12, do_sample=False)
        theirs = trained.generate(**chat, max_new_tokens=12, do_sample=False)
        assert ours.tolist() == theirs.tolist()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, trained.state_dict()[name]), name


def test_lora_output_is_merged_into_its_base_once_the_same_way_as_merge_lora(lora_out, tmp_path):
    from reasoning_sft.artifacts import load_tokenizer_files
    from reasoning_sft.train.modeling import load_for_inference

    out = tmp_path / "serve"
    assert _export("--model_dir", lora_out, "--out_dir", out) == 0
    meta = json.loads((out / "sft_export.json").read_text())
    train_args = json.loads((lora_out / "train_config.json").read_text())["args"]
    assert meta["mode"] == "lora" and meta["base_model"] == train_args["model_name"]
    tok = load_tokenizer_files(str(out))
    adapter = load_for_inference(train_args["model_name"], tok, adapter_dir=str(lora_out))
    text = prompt_text(INSTRUCTIONS[0]) + "Sum.</reasoning><intention>sum()</intention><code>def f(xs):"
    expected = _logits(adapter, tok, text)
    assert not torch.allclose(expected, _logits(train_args["model_name"] and load_for_inference(
        train_args["model_name"], tok), tok, text))  # the adapter changes the model
    torch.testing.assert_close(_logits(out, tok, text), expected, atol=1e-5, rtol=1e-5)
    # --merge_lora wrote the same directory through the same code
    merged = lora_out / "merged"
    assert json.loads((merged / "sft_export.json").read_text())["mode"] == "lora"
    torch.testing.assert_close(_logits(merged, tok, text), expected, atol=1e-5, rtol=1e-5)


def test_dtype_casts_the_weights(full_out, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "bf16"
    assert _export("--model_dir", full_out, "--out_dir", out, "--dtype", "bf16") == 0
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    assert json.loads((out / "sft_export.json").read_text())["dtype"] == "bf16"


def test_bad_input_is_one_line_and_leaves_nothing(run_script, full_out, lora_out, tiny_model_dir, tmp_path,
                                                  tokenizer_dir):
    """The first refusal as users meet it (a fresh process: exit 2, one line, no traceback); the others are the
    same path through run_cli, so they are checked in this process on the UserError it prints."""
    from reasoning_sft.errors import UserError

    out = tmp_path / "serve"
    line = our_error_line(run_script("export.py", "--model_dir", tokenizer_dir, "--out_dir", out), "export.py")
    assert "not a training output" in line and leftovers(out) == []

    def refused(*args):
        with pytest.raises(UserError) as err:
            _export(*args)
        assert "\n" not in str(err.value)
        assert leftovers(out) == [] or leftovers(out) == ["serve"]
        return str(err.value)

    assert "not a training output" in refused("--model_dir", tokenizer_dir, "--out_dir", out)
    assert "no such directory" in refused("--model_dir", tmp_path / "nope", "--out_dir", out)
    assert "--base_model is for a LoRA output" in refused("--model_dir", full_out, "--out_dir", out,
                                                          "--base_model", tiny_model_dir)
    assert "llama.cpp's converter" in refused("--model_dir", full_out, "--out_dir", out, "--gguf",
                                              "--llama_cpp", tmp_path / "no-llama")
    assert leftovers(out) == []
    # an adapter on a base it was not trained on: other shapes
    from reasoning_sft.demo import tiny_llama
    other = tmp_path / "other-base"
    tiny_llama.build_model(str(other), 1031, hidden=96, heads=3, kv_heads=1)
    assert "does not fit --base_model" in refused("--model_dir", lora_out, "--out_dir", out, "--base_model", other)
    assert leftovers(out) == []
    # a busy output
    out.mkdir()
    assert "already exists" in refused("--model_dir", full_out, "--out_dir", out)
    assert list(out.iterdir()) == []


def test_gguf_needs_the_sentencepiece_model(full_out, tmp_path):
    """A tokenizer llama.cpp cannot reproduce gets no GGUF: one line, nothing written."""
    import shutil

    from reasoning_sft.errors import UserError

    no_sp = tmp_path / "no-sp"
    shutil.copytree(full_out, no_sp)
    (no_sp / "tokenizer.model").unlink()
    fake_tree = tmp_path / "llama.cpp"  # a tree that has the tools' names (they are never run here)
    (fake_tree / "gguf-py" / "gguf" / "scripts").mkdir(parents=True)
    (fake_tree / "convert_hf_to_gguf.py").write_text("raise SystemExit(1)\n")
    (fake_tree / "gguf-py" / "gguf" / "scripts" / "gguf_new_metadata.py").write_text("raise SystemExit(1)\n")
    with pytest.raises(UserError, match="no tokenizer.model"):
        _export("--model_dir", no_sp, "--out_dir", tmp_path / "serve", "--gguf", "--llama_cpp", fake_tree)
    assert leftovers(tmp_path / "serve") == []

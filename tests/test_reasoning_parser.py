"""The reasoning/content split that export.py ships as vLLM's reasoning parser (serve/reasoning_parser.py).

Here the split itself, without vLLM: the tags are the training format's, a compliant answer gives the code
alone in content, the split is lossless for any text, and fed in any pieces (as a stream) it gives what the
whole answer gives. The parser inside vLLM and a real `vllm serve`: tests/serving/test_openai_api.py.
"""

import ast
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from reasoning_sft.data.format import parse_output
from reasoning_sft.data.template import CLOSE, OPEN, target_text
from reasoning_sft.serve import reasoning_parser
from reasoning_sft.serve.reasoning_parser import AnswerSplitter, join_answer, split_answer

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None)
CODE = "def add(a, b):\n    return a + b  # a < b </ not a tag\n"


def test_the_parsers_tags_are_the_training_formats():
    assert (reasoning_parser.REASONING_OPEN, reasoning_parser.CODE_OPEN, reasoning_parser.CODE_CLOSE) == \
        (OPEN["reasoning"], OPEN["code"], CLOSE["code"])


def test_a_compliant_answer_gives_the_code_alone_in_content():
    answer = target_text("Add them.", "Return the sum.", CODE)
    assert parse_output(answer).ok
    reasoning, content = split_answer(answer)
    assert content == CODE
    ast.parse(content)
    assert reasoning == "Add them.</reasoning><intention>Return the sum.</intention><code></code>"
    assert join_answer(reasoning, content) == answer


def test_an_answer_cut_before_its_code_has_empty_content():
    for cut in ("Add th", "Add them.</reasoning><intention>Ret", "Add them.</reasoning><intention>x</intention>"):
        assert split_answer(cut) == (cut, "")
        assert join_answer(cut, None) == cut


def test_a_broken_answer_loses_nothing_and_keeps_content_runnable():
    after = target_text("r", "i", CODE) + "\nprint('after the code')"
    reasoning, content = split_answer(after)
    assert content == CODE and reasoning.endswith(CLOSE["code"] + "\nprint('after the code')")
    cut_in_code = "r</reasoning><intention>i</intention><code>def f():\n    return 1 </co"
    assert split_answer(cut_in_code) == ("r</reasoning><intention>i</intention><code>",
                                         "def f():\n    return 1 </co")
    for text in (after, cut_in_code, "no tags at all", "<code>x</code><code>y</code>", "</code><code>"):
        assert join_answer(*split_answer(text)) == text


TAGGY = st.lists(st.one_of(st.sampled_from(["<code>", "</code>", "<", "</", "</co", "<cod", "code>", ">",
                                            "</reasoning>", "<intention>", "\n"]),
                           st.text(alphabet="ab<>/cdoe \n", max_size=6)), max_size=12).map("".join)


@FUZZ
@given(text=TAGGY, cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8))
def test_any_text_splits_losslessly_and_a_stream_splits_as_the_whole(text, cuts):
    reasoning, content = split_answer(text)
    assert join_answer(reasoning, content) == text
    assert CLOSE["code"] not in content
    bounds = sorted({0, len(text), *[c for c in cuts if c <= len(text)]})
    splitter, streamed_r, streamed_c = AnswerSplitter(), [], []
    for a, b in zip(bounds, bounds[1:]):
        r, c = splitter.feed(text[a:b])
        streamed_r.append(r)
        streamed_c.append(c)
    streamed_c.append(splitter.finish())
    assert ("".join(streamed_r), "".join(streamed_c)) == (reasoning, content)


def test_the_exported_file_is_this_module_and_needs_only_vllm(tmp_path):
    from reasoning_sft.serve.export import PARSER_FILE, write_reasoning_parser

    write_reasoning_parser(tmp_path)
    source = (tmp_path / PARSER_FILE).read_text()
    assert source == open(reasoning_parser.__file__).read()
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.ImportFrom)}
    assert imported <= set(sys.stdlib_module_names) | {"vllm"}, imported

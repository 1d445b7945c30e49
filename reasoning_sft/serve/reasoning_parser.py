"""vLLM reasoning parser for reasoning-sft models: the code in `content`, everything else in `reasoning`.

export.py copies this file, as it is, into the serving directory (sft_reasoning_parser.py); vLLM imports it
at start, so it needs nothing but vLLM and the standard library:

    vllm serve out/serve --reasoning-parser-plugin out/serve/sft_reasoning_parser.py --reasoning-parser reasoning_sft

The prompt ends with "<reasoning>", so the answer the model writes is

    REASONING</reasoning><intention>INTENTION</intention><code>CODE</code>

The split (one rule, streamed or not, for any text the model writes):
  - `content` is the code's body: the text between the answer's first "<code>" and the first "</code>" after
    it (to the end of the answer while "</code>" has not come);
  - `reasoning` is the rest of the answer, tags kept, in order: the answer with the code's body taken out.
    For a format-compliant answer it reads "REASONING</reasoning><intention>INTENTION</intention><code></code>".
Rebuilding the answer (join_answer): put `content` back right after the first "<code>" in `reasoning`
(a `reasoning` without "<code>" comes with an empty `content`). A null field is the empty string.

So an answer cut by max_tokens before its "<code>" has an empty content (finish_reason "length"); a reply
that breaks the format loses nothing and raises nothing: text outside the code's body stays in `reasoning`
(text after "</code>" too, so `content` stays runnable), and a prompt that does not end inside an answer
(no "<reasoning>" open) leaves vLLM to return the whole reply as plain `content`.

The parser does its own routing for the whole reply (is_reasoning_end_streaming is never true), so the
streamed deltas are cut by the same code as the whole answer. Guided decoding (structured outputs) is not
meant for this format: with this parser its grammar would not start.
"""

PARSER_NAME = "reasoning_sft"
# the tags as they are in the training format (reasoning_sft/data/template.py; a test checks they agree)
REASONING_OPEN = "<reasoning>"
CODE_OPEN, CODE_CLOSE = "<code>", "</code>"


def _partial_suffix(text, marker):
    """Length of the longest end of `text` that is a proper beginning of `marker` (it may be cut mid-marker)."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


class AnswerSplitter:
    """Splits an answer, fed in pieces, into reasoning and content (the rule above), as the pieces come.

    feed(piece) -> (reasoning, content) to append now; finish() -> the content held back at the end.
    A piece of code that may be the beginning of "</code>" (e.g. a trailing "</co") is held back until the
    next piece says what it is; the tags are whole in practice (each is one token), so this is rare.
    """

    def __init__(self):
        self.state = "before"  # before the first <code>, "code" inside it, "after" its </code>
        self.tail = ""         # the last characters of the reasoning before <code>, to find a <code> cut in two
        self.held = ""         # code text that may be the beginning of </code>

    def feed(self, piece):
        reasoning, content = [], []
        if self.state == "before":
            text = self.tail + piece
            at = text.find(CODE_OPEN)
            if at < 0:
                reasoning.append(piece)
                self.tail = text[-(len(CODE_OPEN) - 1):]
                return "".join(reasoning), ""
            cut = at + len(CODE_OPEN) - len(self.tail)  # where <code> ends in this piece
            reasoning.append(piece[:cut])
            piece, self.state, self.tail = piece[cut:], "code", ""
        if self.state == "code":
            text = self.held + piece
            at = text.find(CODE_CLOSE)
            if at < 0:
                keep = _partial_suffix(text, CODE_CLOSE)
                content.append(text[:len(text) - keep])
                self.held = text[len(text) - keep:]
                return "".join(reasoning), "".join(content)
            content.append(text[:at])
            reasoning.append(CODE_CLOSE)
            piece, self.state, self.held = text[at + len(CODE_CLOSE):], "after", ""
        reasoning.append(piece)  # after </code>: whatever else the model wrote
        return "".join(reasoning), "".join(content)

    def finish(self):
        held, self.held = self.held, ""
        return held


def split_answer(text):
    """(reasoning, content) of a whole answer, by the same code as the streamed split."""
    splitter = AnswerSplitter()
    reasoning, content = splitter.feed(text)
    return reasoning, content + splitter.finish()


def join_answer(reasoning, content):
    """The answer the model wrote, rebuilt from the two fields (None counts as "")."""
    reasoning, content = reasoning or "", content or ""
    at = reasoning.find(CODE_OPEN)
    if at < 0:
        return reasoning + content
    at += len(CODE_OPEN)
    return reasoning[:at] + content + reasoning[at:]


try:  # vLLM imports this file at start; this project imports it (without vLLM) for the functions above
    from vllm.entrypoints.generate.base.protocol import DeltaMessage
    from vllm.reasoning.abs_reasoning_parsers import ReasoningParser, ReasoningParserManager
except ImportError:
    ReasoningParser = None

if ReasoningParser is not None:

    @ReasoningParserManager.register_module(PARSER_NAME)
    class SFTReasoningParser(ReasoningParser):
        """reasoning + intention -> `reasoning`, the code -> `content` (the module docstring says how)."""

        def __init__(self, tokenizer, *args, **kwargs):
            super().__init__(tokenizer, *args, **kwargs)
            ids = {tag: self.vocab.get(tag) for tag in (REASONING_OPEN, CODE_OPEN, CODE_CLOSE)}
            missing = [tag for tag, i in ids.items() if i is None]
            if missing:
                raise RuntimeError(f"{PARSER_NAME}: the tokenizer has no {', '.join(missing)} token; "
                                   "is this a reasoning-sft export?")
            self.reasoning_open_id, self.code_open_id, self.code_close_id = ids.values()
            self.splitter = AnswerSplitter()  # one parser per request and stream

        def is_reasoning_end(self, input_ids):
            # the prompt leaves an answer open (its last tag is <reasoning>): this parser routes the whole
            # reply; else (not our prompt) vLLM returns the reply as plain content
            for i in reversed(input_ids):
                if i == self.reasoning_open_id:
                    return False
                if i == self.code_close_id:
                    return True
            return True

        def is_reasoning_end_streaming(self, input_ids, delta_ids):
            return False  # extract_reasoning_streaming routes every delta, code included

        def extract_content_ids(self, input_ids):
            input_ids = list(input_ids)
            if self.code_open_id not in input_ids:
                return []
            start = input_ids.index(self.code_open_id) + 1
            end = input_ids.index(self.code_close_id, start) if self.code_close_id in input_ids[start:] \
                else len(input_ids)
            return input_ids[start:end]

        def count_reasoning_tokens(self, token_ids):
            return len(token_ids) - len(self.extract_content_ids(token_ids))

        def extract_reasoning(self, model_output, request):
            reasoning, content = split_answer(model_output)
            return reasoning or None, content or None

        def extract_reasoning_streaming(self, previous_text, current_text, delta_text, previous_token_ids,
                                        current_token_ids, delta_token_ids):
            reasoning, content = self.splitter.feed(delta_text)
            if not reasoning and not content:
                return None
            return DeltaMessage(reasoning=reasoning or None, content=content or None)

        def get_streaming_fallback_content(self, previous_text, request):
            # called once when the stream ends: the code held back as a possible beginning of </code>
            return self.splitter.finish() or None

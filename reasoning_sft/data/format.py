"""The training format's strict parser: what a generated continuation must look like.

The prompt ends with "<reasoning>" (data.template.prompt_text), so a continuation must be exactly
the rest of a training target:

    reasoning </reasoning><intention> intention </intention><code> code </code> [EOS]

parse_output() checks that strictly (each of the five tags exactly once, in that order, no
second <reasoning>, nothing but whitespace after </code> or between a closing tag and the
next opening tag, no empty section) and names every deviation in a short error string, so
that a summary can count the kinds of failure over a whole run (serve.generation, eval.scoring).
"""

from dataclasses import asdict, dataclass, field

from reasoning_sft.data.template import CLOSE, OPEN, SECTIONS, TAGS

# The tags a continuation must contain, in order (the prompt already holds "<reasoning>").
EXPECTED = (CLOSE["reasoning"], OPEN["intention"], CLOSE["intention"], OPEN["code"], CLOSE["code"])
# Text between two adjacent tags that must be empty (whitespace tolerated).
GAPS = ((CLOSE["reasoning"], OPEN["intention"]), (CLOSE["intention"], OPEN["code"]))


@dataclass
class Parsed:
    """What parse_output found. Sections are the raw substrings (not stripped); None when not found."""
    ok: bool
    errors: list = field(default_factory=list)
    reasoning: str = None
    intention: str = None
    code: str = None

    def to_dict(self):
        return asdict(self)


def parse_output(text):
    """Check a generated continuation (the text after the prompt's "<reasoning>").

    The caller removes EOS/pad/BOS; trailing whitespace is tolerated. Error strings:
      "missing T" / "extra T"       a tag of EXPECTED absent / present more than once
      "stray <reasoning>"           the opening tag of the prompt generated again
      "order: B before A"           tag B (first occurrence) precedes tag A, which must come first
      "text between A and B"        non-whitespace between </reasoning> and <intention>, or </intention> and <code>
      "text after </code>"          anything but whitespace after </code>
      "empty reasoning|intention|code"  a section that is empty or only whitespace
    A misplaced tag is reported once, by its own missing/extra/stray/order error: text that
    contains a tag does not also count as "text between"/"text after".
    A section is returned whenever its bounding tags occur exactly once, in order, with no
    tag inside, even if other parts of the output are broken (e.g. the code of an output
    with text after </code>); otherwise it is None.
    """
    text = text.rstrip()
    errors = []
    if OPEN["reasoning"] in text:
        errors.append(f"stray {OPEN['reasoning']}")
    counts = {tag: text.count(tag) for tag in EXPECTED}
    for tag in EXPECTED:
        if counts[tag] == 0:
            errors.append(f"missing {tag}")
        elif counts[tag] > 1:
            errors.append(f"extra {tag}")
    first = {tag: text.find(tag) for tag in EXPECTED if counts[tag]}
    present = [tag for tag in EXPECTED if tag in first]
    for a, b in zip(present, present[1:]):
        if first[b] < first[a]:
            errors.append(f"order: {b} before {a}")

    def unique(*tags):  # all tags once each, in the given order
        return (all(counts[t] == 1 for t in tags)
                and all(first[a] < first[b] for a, b in zip(tags, tags[1:])))

    def between(a, b):
        return text[first[a] + len(a):first[b]]

    def plain(s):  # text with no tag in it
        return not any(tag in s for tag in TAGS)

    sections = {}
    if unique(CLOSE["reasoning"]):
        sections["reasoning"] = text[:first[CLOSE["reasoning"]]]
    for name in ("intention", "code"):
        if unique(OPEN[name], CLOSE[name]):
            sections[name] = between(OPEN[name], CLOSE[name])
    sections = {name: value for name, value in sections.items() if plain(value)}
    for a, b in GAPS:
        if unique(a, b) and between(a, b).strip() and plain(between(a, b)):
            errors.append(f"text between {a} and {b}")
    if counts[CLOSE["code"]] == 1:
        after = text[first[CLOSE["code"]] + len(CLOSE["code"]):]
        if after and plain(after):
            errors.append(f"text after {CLOSE['code']}")
    for name in SECTIONS:
        if name in sections and not sections[name].strip():
            errors.append(f"empty {name}")
    return Parsed(ok=not errors, errors=errors, **sections)

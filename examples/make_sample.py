#!/usr/bin/env python3
"""Generate the shipped sample dataset of reasoning-augmented code records.

Usage (from the repository root)::

    python examples/make_sample.py --out examples/sample.jsonl

The script is deterministic (``random.Random(0)``), uses only the standard
library and needs no network access.  Each record has the fields ``id``,
``instruction``, ``reasoning``, ``intention``, ``code`` and ``language``.

The dataset is built from a list of task *families*.  Each family is a small
function that picks parameters (function/argument names, wording, reasoning
phrasing) and returns a record together with a few assertions.  Before
anything is written, every record's code is parsed with ``ast.parse``,
executed, and checked against its family's assertions, so the shipped data is
honest.  Pass ``--check`` to only verify without writing.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
import sys
from string import Template

N_RECORDS = 300
LONG_FRACTION = 0.10
FORBIDDEN = ("<reasoning>", "</reasoning>", "<intention>", "</intention>",
             "<code>", "</code>")

FAMILIES = []


def family(func):
    """Register a task family."""
    FAMILIES.append(func)
    return func


OPENERS = [
    None, None, None,
    "Let me think this through before writing any code.",
    "First, I want to pin down exactly what the input and output look like.",
    "Before coding, I'll work out the approach and the edge cases.",
    "Let me restate the problem to make sure I understand it.",
]

CLOSERS = [
    None, None, None,
    "I'll add a short docstring and keep the function free of side effects.",
    "Then I'll sanity-check the logic on a tiny example by hand.",
    "That covers the tricky cases, so the implementation should be short.",
    "I'll keep the names descriptive so the code reads like the plan.",
]

GENERIC_LONG = [
    "Let me also think about testing $fn. I want at least one trivial input, "
    "one input that exercises the main path, and one input that hits each "
    "boundary I listed above. Writing those cases down first helps me avoid "
    "the classic mistake of only testing the happy path. If a case is "
    "ambiguous in the statement, I should pick the most natural "
    "interpretation and document it in the docstring rather than silently "
    "choosing one behaviour.",
    "On complexity: the approach I chose runs in $cx. That is comfortably "
    "fast for the input sizes a function like this usually sees, and it "
    "avoids any hidden quadratic behaviour such as repeated list "
    "concatenation or calling list.index inside a loop. I also want to keep "
    "the extra memory proportional to the output or smaller, so I won't "
    "build intermediate copies unless they make the code clearly simpler.",
    "Another consideration is mutation. Callers generally do not expect a "
    "$what like $fn to modify its arguments, so I will avoid sorting or "
    "popping from the input in place. If I need a modified version, I will "
    "make a copy first; the cost is linear and the behaviour is much less "
    "surprising. Returning new objects also makes the function easier to "
    "test, because each assertion starts from a clean state.",
    "I considered whether to validate the input types explicitly. For a "
    "small utility, heavy validation mostly adds noise; Python will raise a "
    "reasonably clear TypeError on its own if something is badly wrong. I "
    "will only add explicit checks where a bad value would otherwise produce "
    "a silently wrong answer instead of an exception, because silent wrong "
    "answers are much harder to debug later.",
    "Readability matters too. I prefer a straightforward loop with well "
    "named variables over a clever one-liner, since the next person who "
    "reads this code, possibly me in six months, should be able to verify "
    "it at a glance. Where a comprehension is the clearest expression of "
    "the idea I will use it, but I won't nest comprehensions or chain "
    "several functional helpers just to save a few lines.",
    "Let me double-check the boundaries once more, because off-by-one "
    "errors are the most common bug in this kind of task. I'll trace the "
    "loop on an input of size zero, size one and size two, and confirm that "
    "every index I touch is in range and that the loop terminates. If the "
    "trace for those tiny inputs is right, the general case usually is too.",
    "I also want the signature to be unsurprising: positional "
    "parameters in the order the statement mentions them, sensible "
    "defaults where the statement implies one, and a return value of a "
    "single consistent type. Mixing return types, for example returning "
    "None for some inputs and a list for others, would force every caller "
    "to add special cases, so I'll avoid it unless the task demands it.",
    "It is also worth asking whether the standard library already solves "
    "part of the problem. Modules like collections, heapq, bisect and "
    "itertools are well tested and fast, and using them often makes the "
    "intent clearer. On the other hand, the point of the exercise is the "
    "algorithm itself, so I will only lean on a library helper where it "
    "does not hide the core idea the task is asking for.",
]


def build(rng, v, *, instruction, reasoning, intention, code, test,
          alternatives, cx, long=False):
    """Assemble one record from a family's templates.

    ``reasoning`` is a list of slots; each slot is a list of alternative
    sentences (``None`` means the slot may be skipped).  ``$name``
    placeholders are filled from the parameter dict ``v``.
    """
    v = dict(v, cx=cx)
    v.setdefault("what", "function")

    def sub(text):
        return Template(text).substitute(v)

    sentences = []
    for slot in [OPENERS] + reasoning + [CLOSERS]:
        if isinstance(slot, str):
            slot = [slot]
        choice = rng.choice(slot)
        if choice:
            sentences.append(sub(choice))
    if len(sentences) > 5 and rng.random() < 0.5:
        cut = rng.randint(2, len(sentences) - 2)
        text = (" ".join(sentences[:cut]) + "\n" + " ".join(sentences[cut:]))
    else:
        text = " ".join(sentences)
    if not long and len(text) < 220:
        text += " " + sub(rng.choice([c for c in CLOSERS if c]))
    if not long and rng.random() < 0.3:
        # Medium-length variant: also weigh an alternative approach.
        extra = sub(rng.choice(alternatives))
        n_sentences = len(sentences) + len(re.findall(r"[.!?](?:\s|$)", extra))
        if n_sentences <= 12 and len(text) + len(extra) + 2 <= 1200:
            text += "\n\n" + extra
    if long:
        target = rng.randint(2600, 4400)
        paragraphs = [sub(p) for p in alternatives]
        generic = [sub(p) for p in GENERIC_LONG]
        rng.shuffle(generic)
        paragraphs += generic
        for para in paragraphs:
            if len(text) >= target:
                break
            if len(text) + len(para) + 2 > 4900:
                continue
            text += "\n\n" + para
    record = {
        "instruction": sub(rng.choice(instruction)),
        "reasoning": text,
        "intention": sub(rng.choice(intention)),
        "code": sub(code).strip("\n") + "\n",
        "language": "python",
    }
    return record, sub(test)


# ---------------------------------------------------------------------------
# Task families.  Each takes (rng, long) and returns (record, test_source).
# ---------------------------------------------------------------------------


@family
def merge_intervals(rng, long):
    v = dict(fn=rng.choice(["merge_intervals", "merge_ranges", "coalesce_intervals"]),
             arg=rng.choice(["intervals", "ranges", "spans"]))
    return build(rng, v, long=long, cx="O(n log n) time because of the sort",
        instruction=[
            "Write a function `$fn($arg)` that merges overlapping closed intervals and returns them sorted by start.",
            "Implement `$fn($arg)`. Given a list of `[start, end]` pairs, merge every group of overlapping or touching "
            "intervals and return the merged list ordered by start.",
            "Given a list of closed intervals `$arg`, write `$fn` that returns a new list where all overlapping "
            "intervals have been combined. The input may be unsorted.",
        ],
        reasoning=[
            ["The input is a list of [start, end] pairs that may arrive in any order.",
             "Intervals can come unsorted, so the order of $arg tells me nothing by itself."],
            ["If I sort by start, any interval that overlaps the current merged block must come right after it.",
             "Sorting by the start point means overlaps can only happen between neighbours in the sorted order."],
            ["Then one linear sweep suffices: compare each interval's start with the end of the last merged interval.",
             "After sorting I can sweep once, keeping a result list and extending its last element whenever the next "
             "start is not past its end."],
            ["Since the intervals are closed, [1, 3] and [3, 5] touch and should merge, so the comparison is start <= "
             "last_end.",
             "Touching intervals like [1, 2] and [2, 4] count as overlapping because the endpoints are inclusive."],
            ["When extending, I take max of the two ends, because a later interval can be fully contained in the "
             "current one.",
             None],
            ["An empty input should just return an empty list.", None],
            ["Sorting dominates, giving O(n log n) time and O(n) extra space for the output.",
             "Overall complexity is O(n log n) for the sort plus O(n) for the sweep."],
        ],
        intention=[
            "Sort by start, then sweep, extending the last interval while they overlap.",
            "Sort the intervals by start and merge each one into the previous block when its start is at most the "
            "block's end.",
        ],
        code=r'''
def $fn($arg):
    """Merge overlapping closed intervals and return them sorted by start."""
    merged = []
    for start, end in sorted($arg, key=lambda pair: pair[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged
''',
        test='''
assert $fn([[1, 3], [2, 6], [8, 10], [15, 18]]) == [[1, 6], [8, 10], [15, 18]]
assert $fn([[5, 7], [1, 5]]) == [[1, 7]]
assert $fn([[1, 10], [2, 3]]) == [[1, 10]]
assert $fn([]) == []
''',
        alternatives=[
            "One alternative is to build a boolean array over the coordinate range and mark covered points, then read "
            "off runs. That only works for small integer coordinates and wastes memory when the range is large, so it "
            "is a poor general solution. Another option is an interval tree, which is great for repeated queries but "
            "overkill for a single merge. The sort-and-sweep approach is the standard answer because it is simple, "
            "handles arbitrary numeric endpoints and is optimal up to the sort.",
        ])


@family
def two_sum(rng, long):
    v = dict(fn=rng.choice(["two_sum", "find_pair_indices", "pair_with_sum"]),
             arg=rng.choice(["nums", "values", "numbers"]),
             target=rng.choice(["target", "goal", "total"]))
    return build(rng, v, long=long, cx="O(n) time and O(n) extra space",
        instruction=[
            "Write `$fn($arg, $target)` that returns the indices `(i, j)` with `i < j` of two elements summing to "
            "`$target`, or `None` if no such pair exists.",
            "Implement `$fn($arg, $target)`: find two distinct positions in the list whose values add up to `$target` "
            "and return them as a tuple of indices in increasing order. Return `None` when there is no pair.",
        ],
        reasoning=[
            ["The brute-force way checks every pair, which is O(n^2).",
             "Checking all pairs would work but costs quadratic time."],
            ["Instead I can remember values I've already seen in a dict mapping value to index.",
             "A hash map from value to its index lets me look up the needed complement in O(1)."],
            ["For each position j, the complement is $target - $arg[j]; if it is in the map, I've found i < j.",
             "While scanning, I compute what value would complete the pair and check whether it appeared earlier."],
            ["I must insert the current value after the lookup so an element is never paired with itself.",
             "Doing the lookup before inserting avoids using the same element twice, e.g. target 6 with a single 3."],
            ["Duplicates are fine: [3, 3] with target 6 should give (0, 1).", None],
            ["If the loop ends without a match, return None.",
             "No match means returning None, as the statement asks."],
        ],
        intention=[
            "Scan once, storing each value's index in a dict and checking whether the complement was seen before.",
            "Use a value-to-index hash map and return the first pair whose complement has already been seen.",
        ],
        code=r'''
def $fn($arg, $target):
    """Return indices (i, j), i < j, with $arg[i] + $arg[j] == $target, else None."""
    seen = {}
    for j, value in enumerate($arg):
        complement = $target - value
        if complement in seen:
            return seen[complement], j
        seen.setdefault(value, j)
    return None
''',
        test='''
assert $fn([2, 7, 11, 15], 9) == (0, 1)
assert $fn([3, 2, 4], 6) == (1, 2)
assert $fn([3, 3], 6) == (0, 1)
assert $fn([1, 2], 7) is None
''',
        alternatives=[
            "A second approach sorts the values together with their original indices and walks two pointers inward "
            "from both ends. That uses O(n log n) time and is attractive when memory is tight, but it needs extra "
            "bookkeeping to report original indices in increasing order. The hash-map scan is linear and simpler, and "
            "dictionary lookups are cheap in Python, so it is the better default here.",
        ])


@family
def is_palindrome(rng, long):
    v = dict(fn=rng.choice(["is_palindrome", "is_clean_palindrome", "reads_same_backwards"]),
             arg=rng.choice(["text", "s", "phrase"]))
    return build(rng, v, long=long, cx="O(n) time and O(1) extra space",
        instruction=[
            "Write `$fn($arg)` that returns True if the string reads the same forwards and backwards, ignoring case "
            "and any non-alphanumeric characters.",
            "Implement `$fn($arg)`. Consider only letters and digits, compare them case-insensitively, and report "
            "whether the string is a palindrome.",
            "Given a string `$arg`, decide whether it is a palindrome once punctuation and spaces are removed and case "
            "is ignored. Write this as `$fn`.",
        ],
        reasoning=[
            ["Only alphanumeric characters count, and comparison is case-insensitive.",
             "Spaces, punctuation and case should not affect the answer."],
            ["I could build a filtered lowercase string and compare it with its reverse, but that allocates a copy.",
             "The simplest version filters the string and compares it to its reverse; it's O(n) but uses extra "
             "memory."],
            ["A two-pointer scan from both ends avoids the copy: skip non-alphanumerics on each side, then compare "
             "lowercased characters.",
             "With two indices moving inward and skipping characters that don't count, I can compare in place."],
            ["The loop stops when the pointers meet or cross.",
             "I need to make sure the skipping loops also respect left < right so they don't run past each other."],
            ["An empty string, or one with no alphanumerics at all, counts as a palindrome.",
             "Edge case: a string like '!!' has nothing to compare and should return True."],
        ],
        intention=[
            "Walk two pointers inward, skipping non-alphanumeric characters and comparing the rest case-insensitively.",
            "Use two indices from both ends, skip characters that are not letters or digits, and fail on the first "
            "mismatch.",
        ],
        code=r'''
def $fn($arg):
    """Return True if $arg is a palindrome, ignoring case and non-alphanumerics."""
    left, right = 0, len($arg) - 1
    while left < right:
        while left < right and not $arg[left].isalnum():
            left += 1
        while left < right and not $arg[right].isalnum():
            right -= 1
        if $arg[left].lower() != $arg[right].lower():
            return False
        left += 1
        right -= 1
    return True
''',
        test='''
assert $fn("A man, a plan, a canal: Panama")
assert not $fn("race a car")
assert $fn("")
assert $fn("!!")
assert $fn("No 'x' in Nixon")
''',
        alternatives=[
            "The copy-based version, `cleaned = [c.lower() for c in text if c.isalnum()]` followed by `cleaned == "
            "cleaned[::-1]`, is arguably more readable and in CPython may even be faster for short strings because the "
            "work happens in C. Its downside is O(n) extra memory and the fact that it always scans the whole string "
            "even when the first characters already mismatch. The two-pointer version exits early and uses constant "
            "space, which is the behaviour I'd want for very long inputs.",
        ])


@family
def group_anagrams(rng, long):
    v = dict(fn=rng.choice(["group_anagrams", "bucket_anagrams", "anagram_groups"]),
             arg=rng.choice(["words", "strings", "tokens"]))
    return build(rng, v, long=long, cx="O(n k log k) time for n words of length up to k",
        instruction=[
            "Write `$fn($arg)` that groups words that are anagrams of each other. Return a list of groups, each group "
            "in input order, with groups ordered by first appearance.",
            "Implement `$fn($arg)`: partition a list of strings into lists of mutual anagrams, preserving the original "
            "order within and across groups.",
        ],
        reasoning=[
            ["Two words are anagrams exactly when their sorted characters are equal, so the sorted string is a "
             "canonical key.",
             "I need a key that is identical for all anagrams; sorting the letters gives one."],
            ["A dict from key to list of words collects the groups.",
             "I'll map each key to the list of words that share it."],
            ["Python dicts preserve insertion order, so groups come out in order of first appearance for free.",
             "Because dict insertion order is preserved, iterating the values yields groups in first-seen order."],
            ["An alternative key is a 26-length count tuple, which is O(k) instead of O(k log k), but it assumes "
             "lowercase ASCII.",
             None],
            ["Empty strings are anagrams of each other and form their own group.", None],
        ],
        intention=[
            "Key each word by its sorted letters in an insertion-ordered dict and return the dict's values.",
            "Bucket words by their sorted-character signature and return the buckets in first-appearance order.",
        ],
        code=r'''
def $fn($arg):
    """Group anagrams together, preserving first-appearance order."""
    groups = {}
    for word in $arg:
        key = "".join(sorted(word))
        groups.setdefault(key, []).append(word)
    return list(groups.values())
''',
        test='''
assert $fn(["eat", "tea", "tan", "ate", "nat", "bat"]) == [["eat", "tea", "ate"], ["tan", "nat"], ["bat"]]
assert $fn([]) == []
assert $fn(["", ""]) == [["", ""]]
''',
        alternatives=[
            "Using a letter-count tuple as the key avoids the per-word sort and is asymptotically better for long "
            "words, but it silently breaks for uppercase letters, digits or Unicode unless I switch to a Counter, and "
            "a frozenset of Counter items is clumsy. Another option is to assign each letter a distinct prime and "
            "multiply, which gives a unique product per multiset; it is clever but overflows in other languages and is "
            "hard to read. Sorting is the clearest general key.",
        ])


@family
def fibonacci(rng, long):
    v = dict(fn=rng.choice(["fibonacci", "fib", "nth_fibonacci"]),
             arg=rng.choice(["n", "index", "k"]))
    return build(rng, v, long=long, cx="O(n) time and O(1) space",
        instruction=[
            "Write `$fn($arg)` that returns the $arg-th Fibonacci number, with F(0) = 0 and F(1) = 1. Raise ValueError "
            "for negative input.",
            "Implement `$fn($arg)` computing Fibonacci numbers iteratively so that it works for large indices without "
            "recursion limits. Negative input should raise ValueError.",
        ],
        reasoning=[
            ["The naive recursive definition recomputes subproblems and is exponential.",
             "Direct recursion is elegant but takes exponential time and hits the recursion limit for large $arg."],
            ["Only the last two values are needed at each step, so an iterative loop with two variables is enough.",
             "I can roll two variables forward $arg times, which is linear and constant memory."],
            ["Python integers are arbitrary precision, so large results are fine.",
             None],
            ["F(0) = 0 falls out naturally if I start with a, b = 0, 1 and return a after $arg steps.",
             "Starting from (0, 1) and advancing $arg times leaves F($arg) in the first variable."],
            ["Negative indices are invalid here, so I'll raise ValueError.",
             "I'll reject negative input explicitly instead of returning something misleading."],
        ],
        intention=[
            "Iterate $arg times, shifting the pair (a, b) to (b, a + b), and return a.",
            "Keep the last two Fibonacci numbers in variables and advance them in a loop.",
        ],
        code=r'''
def $fn($arg):
    """Return the $arg-th Fibonacci number (F(0) = 0, F(1) = 1)."""
    if $arg < 0:
        raise ValueError("$arg must be non-negative")
    a, b = 0, 1
    for _ in range($arg):
        a, b = b, a + b
    return a
''',
        test='''
assert [$fn(i) for i in range(8)] == [0, 1, 1, 2, 3, 5, 8, 13]
assert $fn(90) == 2880067194370816120
try:
    $fn(-1)
except ValueError:
    pass
else:
    raise AssertionError("expected ValueError")
''',
        alternatives=[
            "There are faster methods: fast doubling uses the identities F(2k) = F(k)(2F(k+1) - F(k)) and F(2k+1) = "
            "F(k)^2 + F(k+1)^2 to get O(log n) arithmetic operations, and 2x2 matrix exponentiation achieves the same "
            "bound. Binet's closed form looks attractive but relies on floating point and becomes wrong around n = 71. "
            "For the sizes a typical caller needs, the linear loop is simple, exact and fast enough, so I'll use it "
            "and mention fast doubling only as a possible optimisation.",
        ])


@family
def binary_search(rng, long):
    v = dict(fn=rng.choice(["binary_search", "find_index", "search_sorted"]),
             arg=rng.choice(["items", "sorted_values", "arr"]),
             x=rng.choice(["target", "key", "needle"]))
    return build(rng, v, long=long, cx="O(log n) time and O(1) space",
        instruction=[
            "Write `$fn($arg, $x)` that returns the index of the first occurrence of `$x` in the ascending list "
            "`$arg`, or -1 if it is absent. Do not use the bisect module.",
            "Implement binary search as `$fn($arg, $x)`: given a sorted list that may contain duplicates, return the "
            "leftmost index holding `$x`, or -1.",
        ],
        reasoning=[
            ["The list is sorted, so binary search gives O(log n).",
             "Sortedness is the key property; I can halve the search range each step."],
            ["Because of duplicates I want the leftmost match, so I'll search for the first index whose value is >= "
             "$x.",
             "To get the first occurrence, I'll compute a lower bound rather than stopping at any equal element."],
            ["I'll use a half-open range [lo, hi) with hi = len($arg), which avoids off-by-one confusion.",
             "A half-open interval lo..hi makes the loop condition simply lo < hi."],
            ["If $arg[mid] < $x the answer is right of mid, otherwise it is at mid or to the left.",
             "When the middle value is too small I move lo to mid + 1; otherwise hi becomes mid."],
            ["After the loop, lo is the insertion point; I check it is in range and actually equals $x.",
             "At the end I must verify that lo is a valid index holding $x, else return -1."],
            ["An empty list returns -1 immediately through the same check.", None],
        ],
        intention=[
            "Compute the lower bound with a half-open binary search, then confirm the element matches.",
            "Binary search for the first index with value >= $x and return it if it equals $x, else -1.",
        ],
        code=r'''
def $fn($arg, $x):
    """Return the leftmost index of $x in the ascending list $arg, or -1."""
    lo, hi = 0, len($arg)
    while lo < hi:
        mid = (lo + hi) // 2
        if $arg[mid] < $x:
            lo = mid + 1
        else:
            hi = mid
    if lo < len($arg) and $arg[lo] == $x:
        return lo
    return -1
''',
        test='''
assert $fn([1, 2, 2, 2, 3], 2) == 1
assert $fn([1, 3, 5], 4) == -1
assert $fn([], 1) == -1
assert $fn([1, 3, 5], 5) == 2
assert $fn([1, 3, 5], 0) == -1
''',
        alternatives=[
            "The textbook closed-interval variant with lo <= hi and an early return on equality is fine for distinct "
            "keys, but with duplicates it returns an arbitrary matching index, which is not what was asked. I could "
            "fix that by continuing the search to the left after a match, but the lower-bound formulation handles it "
            "without extra branches. In Python there is no integer overflow in (lo + hi) // 2, so the lo + (hi - lo) "
            "// 2 trick is unnecessary, though harmless.",
        ])


@family
def flatten(rng, long):
    v = dict(fn=rng.choice(["flatten", "flatten_nested", "deep_flatten"]),
             arg=rng.choice(["nested", "items", "data"]))
    return build(rng, v, long=long, cx="O(n) time in the total number of elements and lists",
        instruction=[
            "Write `$fn($arg)` that takes an arbitrarily nested list of integers and returns a flat list of all "
            "integers in left-to-right order.",
            "Implement `$fn($arg)`: given lists nested to any depth, produce a single flat list. Only `list` instances "
            "should be expanded; other values are kept as-is.",
        ],
        reasoning=[
            ["The structure is recursive, so recursion is the natural first idea.",
             "Nesting can be arbitrarily deep, which suggests either recursion or an explicit stack."],
            ["Deep nesting could hit Python's recursion limit, so an explicit stack of iterators is safer.",
             "To avoid RecursionError on pathological inputs, I'll manage my own stack of iterators."],
            ["I push an iterator for the top-level list; when I see a list, I push its iterator; when an iterator is "
             "exhausted, I pop it.",
             "Each stack entry is an iterator; nested lists get pushed, and exhausted iterators are popped."],
            ["This keeps left-to-right order without reversing anything.",
             "Using iterators rather than pushing elements in reverse keeps the order obvious."],
            ["Strings and tuples are not expanded, only lists, as the statement says.", None],
            ["Empty sublists simply contribute nothing.", None],
        ],
        intention=[
            "Traverse with an explicit stack of iterators, descending into lists and appending everything else.",
            "Iteratively walk the nested lists using a stack of iterators so depth is not limited by recursion.",
        ],
        code=r'''
def $fn($arg):
    """Flatten arbitrarily nested lists into a single list."""
    result = []
    stack = [iter($arg)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            result.append(item)
        else:
            stack.pop()
    return result
''',
        test='''
assert $fn([1, [2, [3, 4]], [], 5]) == [1, 2, 3, 4, 5]
assert $fn([]) == []
assert $fn([[[[1]]], "ab", (2, 3)]) == [1, "ab", (2, 3)]
deep = [1]
for _ in range(5000):
    deep = [deep]
assert $fn(deep) == [1]
''',
        alternatives=[
            "A recursive generator with `yield from` is the most readable version and is perfectly fine for ordinary "
            "data, but each nesting level adds a Python frame, and chains of `yield from` also make each yielded value "
            "pass through every level, so very deep inputs are both slow and at risk of RecursionError. The "
            "explicit-stack version is a little less pretty but bounded only by memory. The for/else construct lets me "
            "detect exhaustion of the current iterator cleanly.",
        ])


@family
def top_k_words(rng, long):
    v = dict(fn=rng.choice(["top_k_words", "most_common_words", "frequent_words"]),
             arg=rng.choice(["text", "document", "passage"]),
             k=rng.choice(["k", "n", "limit"]))
    return build(rng, v, long=long, cx="O(n + u log u) time for n words with u distinct",
        instruction=[
            "Write `$fn($arg, $k)` that returns the `$k` most frequent words in a string as a list of `(word, count)` "
            "tuples. Words are case-insensitive runs of letters; ties are broken alphabetically.",
            "Implement `$fn($arg, $k)`. Split the text into lowercase alphabetic words, count them, and return the top "
            "`$k` as (word, count) pairs sorted by descending count, then alphabetically.",
        ],
        reasoning=[
            ["First I need a clear definition of a word: maximal runs of letters, lowercased.",
             "Tokenisation matters; I'll treat any non-letter as a separator and lowercase everything."],
            ["A regex like [a-z]+ on the lowercased text handles punctuation and apostrophes consistently.",
             "re.findall with a letters-only pattern is simpler than splitting and stripping punctuation."],
            ["collections.Counter does the counting in one pass.",
             "Counting is a job for Counter."],
            ["Counter.most_common breaks ties by insertion order, not alphabetically, so I'll sort explicitly with key "
             "(-count, word).",
             "The tie-break rule means I can't rely on most_common; sorting by (-count, word) gives the required "
             "order."],
            ["If $k exceeds the number of distinct words, slicing just returns all of them.",
             "Slicing handles $k larger than the vocabulary, and $k = 0 gives an empty list."],
        ],
        intention=[
            "Extract lowercase letter runs with a regex, count with Counter, and sort by (-count, word) before "
            "slicing.",
            "Tokenise, count, sort by descending frequency then alphabetically, and take the first $k.",
        ],
        code=r'''
import re
from collections import Counter


def $fn($arg, $k):
    """Return the $k most frequent words as (word, count), ties alphabetical."""
    words = re.findall(r"[a-z]+", $arg.lower())
    counts = Counter(words)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:$k]
''',
        test='''
assert $fn("the cat and the hat; The end", 2) == [("the", 3), ("and", 1)]
assert $fn("", 3) == []
assert $fn("b a b a c", 5) == [("a", 2), ("b", 2), ("c", 1)]
''',
        alternatives=[
            "If the vocabulary were huge and k small, a heap via heapq.nsmallest with key (-count, word) would run in "
            "O(u log k) instead of sorting all u distinct words. For typical text the difference is negligible and the "
            "full sort is easier to reason about. A further alternative is bucket sort by count, which is linear, but "
            "it complicates the alphabetical tie-break and is not worth it here.",
        ])


@family
def balanced_brackets(rng, long):
    v = dict(fn=rng.choice(["is_balanced", "brackets_balanced", "valid_brackets"]),
             arg=rng.choice(["s", "expr", "text"]))
    return build(rng, v, long=long, cx="O(n) time and O(n) space for the stack",
        instruction=[
            "Write `$fn($arg)` that checks whether the brackets `()[]{}` in a string are balanced and properly nested. "
            "Other characters should be ignored.",
            "Implement `$fn($arg)`: return True if every opening bracket has a matching closing bracket of the same "
            "type in the correct order. Characters that are not brackets don't matter.",
        ],
        reasoning=[
            ["This is the classic stack problem: push openers, and on a closer check the top of the stack.",
             "A stack captures nesting exactly, since the most recent unmatched opener must be closed first."],
            ["A dict mapping each closer to its opener keeps the matching logic compact.",
             "I'll map ')' to '(', ']' to '[' and '}' to '{'."],
            ["A closer with an empty stack or the wrong opener on top means failure.",
             "If I see a closing bracket when the stack is empty, or the top doesn't match, I can return False "
             "immediately."],
            ["At the end the stack must be empty, otherwise some opener was never closed.",
             "Leftover openers at the end also make the string unbalanced."],
            ["Non-bracket characters are skipped.", None],
        ],
        intention=[
            "Push opening brackets on a stack and pop on each closing bracket, checking the pair matches; succeed if "
            "the stack ends empty.",
            "Use a stack with a closer-to-opener map, returning False on any mismatch and True only if nothing is left "
            "open.",
        ],
        code=r'''
def $fn($arg):
    """Return True if the brackets in $arg are balanced and properly nested."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in $arg:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack
''',
        test='''
assert $fn("([]{})")
assert $fn("a(b)c[d]")
assert not $fn("(]")
assert not $fn("((")
assert not $fn(")")
assert $fn("")
''',
        alternatives=[
            "A counter-based approach works when there is only one bracket type, incrementing on '(' and decrementing "
            "on ')', but with three types it cannot detect crossings like '([)]', where each count is balanced but the "
            "nesting is wrong. Repeatedly deleting '()', '[]' and '{}' substrings until nothing changes is another "
            "known trick, but it is quadratic and does not ignore other characters. The stack is both correct and "
            "linear.",
        ])


@family
def rle_encode(rng, long):
    v = dict(fn=rng.choice(["rle_encode", "run_length_encode", "compress_runs"]),
             arg=rng.choice(["text", "s", "data"]))
    return build(rng, v, long=long, cx="O(n) time",
        instruction=[
            "Write `$fn($arg)` that run-length encodes a string as a list of `(char, count)` tuples, e.g. 'aaab' "
            "becomes [('a', 3), ('b', 1)].",
            "Implement `$fn($arg)`: collapse consecutive repeated characters into (character, run length) pairs in "
            "order.",
        ],
        reasoning=[
            ["I need to group consecutive equal characters, which is exactly what itertools.groupby does.",
             "Consecutive runs are the unit here; groupby yields them directly."],
            ["Alternatively a manual loop tracking the current character and count works, but it needs a final flush "
             "after the loop.",
             "Writing it by hand means remembering to emit the last run after the loop ends, a common bug."],
            ["For each group I count its length with sum(1 for _ in group) since the group is an iterator.",
             "The group is a lazy iterator, so I count it by consuming it."],
            ["An empty string yields an empty list.", None],
            ["Returning tuples instead of a formatted string avoids ambiguity when the text contains digits.",
             None],
        ],
        intention=[
            "Use itertools.groupby to find runs and emit (char, run_length) for each.",
            "Group consecutive identical characters and record each character with the size of its run.",
        ],
        code=r'''
from itertools import groupby


def $fn($arg):
    """Run-length encode $arg into a list of (char, count) tuples."""
    return [(char, sum(1 for _ in group)) for char, group in groupby($arg)]
''',
        test='''
assert $fn("aaabccdddd") == [("a", 3), ("b", 1), ("c", 2), ("d", 4)]
assert $fn("") == []
assert $fn("x") == [("x", 1)]
assert $fn("1122") == [("1", 2), ("2", 2)]
''',
        alternatives=[
            "Another design would return a compact string like 'a3b1c2', which is what many people picture for RLE, "
            "but decoding it becomes ambiguous as soon as the input contains digits, and runs of ten or more need "
            "multi-digit counts. The tuple representation sidesteps all of that and can be formatted later by the "
            "caller if needed. A regex with a backreference, (.)\\1*, also finds runs, but groupby is clearer.",
        ])


@family
def rle_decode(rng, long):
    v = dict(fn=rng.choice(["rle_decode", "expand_runs", "decode_run_length"]),
             arg=rng.choice(["encoded", "code", "packed"]))
    return build(rng, v, long=long, cx="O(n + m) time where m is the output length",
        instruction=[
            "Write `$fn($arg)` that decodes a run-length encoded string such as '3a2b1c' into 'aaabbc'. Counts may "
            "have several digits.",
            "Implement `$fn($arg)`: the input consists of pairs of a positive decimal count followed by a single "
            "non-digit character. Return the expanded string, and raise ValueError on malformed input.",
        ],
        reasoning=[
            ["The format is count-then-character, and counts can be more than one digit, like '12x'.",
             "Multi-digit counts mean I can't just read one character at a time as a number."],
            ["I'll scan characters, accumulating digits into a number until I hit a non-digit, which is the character "
             "to repeat.",
             "A single pass accumulating digits works: digits extend the count, a non-digit closes a pair."],
            ["If a non-digit appears without a preceding count, or digits are left dangling at the end, the input is "
             "malformed.",
             "Malformed cases are a character with no count and trailing digits with no character; both should raise "
             "ValueError."],
            ["Collecting pieces in a list and joining at the end avoids quadratic string concatenation.",
             "I'll append chunks to a list and join once."],
            ["An empty string decodes to an empty string.", None],
        ],
        intention=[
            "Scan once, building the count from digits and emitting char * count when a non-digit arrives; validate "
            "leftovers.",
            "Accumulate digit runs into a count, expand on each character, and raise ValueError for missing or "
            "dangling counts.",
        ],
        code=r'''
def $fn($arg):
    """Decode a run-length string like '3a2b' into 'aaabb'."""
    pieces = []
    count = ""
    for ch in $arg:
        if ch.isdigit():
            count += ch
        else:
            if not count:
                raise ValueError("missing count before %r" % ch)
            pieces.append(ch * int(count))
            count = ""
    if count:
        raise ValueError("dangling count at end of input")
    return "".join(pieces)
''',
        test='''
assert $fn("3a2b1c") == "aaabbc"
assert $fn("12x") == "x" * 12
assert $fn("") == ""
for bad in ("a", "3a4"):
    try:
        $fn(bad)
    except ValueError:
        pass
    else:
        raise AssertionError(bad)
''',
        alternatives=[
            "A regular expression such as (\\d+)(\\D) with re.findall would extract the pairs in one line, but it "
            "silently skips malformed parts of the input instead of reporting them, so I'd need an extra check that "
            "the matches cover the whole string, e.g. with re.fullmatch on a repeated group. The hand-written scanner "
            "gives precise error messages and is just as fast, so I prefer it for a decoder where bad input should be "
            "loud.",
        ])


@family
def min_stack(rng, long):
    v = dict(cls=rng.choice(["MinStack", "TrackingStack", "MinimumStack"]),
             get=rng.choice(["get_min", "minimum", "current_min"]))
    v.update(fn=v["cls"], arg="", what="class")
    return build(rng, v, long=long, cx="O(1) time per operation and O(n) space",
        instruction=[
            "Implement a class `$cls` supporting `push(x)`, `pop()`, `top()` and `$get()`, all in O(1) time. `pop`, "
            "`top` and `$get` should raise IndexError on an empty stack.",
            "Design a stack class `$cls` that, in addition to push/pop/top, can return the current minimum element via "
            "`$get()` in constant time.",
        ],
        reasoning=[
            ["Scanning for the minimum on every call would be O(n), so I need to maintain it incrementally.",
             "The challenge is keeping the minimum available after pops, not just pushes."],
            ["A neat trick is to store, with each element, the minimum of the stack up to and including that element.",
             "If every entry is a pair (value, min_so_far), the top entry always knows the current minimum."],
            ["Popping then automatically restores the previous minimum, because it is stored in the entry below.",
             "After a pop, the new top's stored minimum is exactly the minimum of the remaining elements."],
            ["Duplicates of the minimum are handled correctly since each entry has its own copy.", None],
            ["For empty-stack operations I'll raise IndexError, matching list.pop's behaviour.",
             "Empty stack access should raise IndexError, which is the conventional error for this."],
        ],
        intention=[
            "Store (value, running_min) pairs in a list so push, pop, top and $get are all O(1).",
            "Keep each element together with the minimum at its depth; the top pair answers $get directly.",
        ],
        code=r'''
class $cls:
    """A stack that also reports its minimum element in O(1)."""

    def __init__(self):
        self._items = []  # (value, minimum of stack up to this value)

    def push(self, x):
        current = x if not self._items else min(x, self._items[-1][1])
        self._items.append((x, current))

    def pop(self):
        if not self._items:
            raise IndexError("pop from empty stack")
        return self._items.pop()[0]

    def top(self):
        if not self._items:
            raise IndexError("top of empty stack")
        return self._items[-1][0]

    def $get(self):
        if not self._items:
            raise IndexError("min of empty stack")
        return self._items[-1][1]

    def __len__(self):
        return len(self._items)
''',
        test='''
s = $cls()
for x in (5, 3, 7, 3, 1):
    s.push(x)
assert s.$get() == 1
assert s.pop() == 1 and s.$get() == 3
assert s.pop() == 3 and s.$get() == 3
s.pop(); s.pop()
assert s.$get() == 5 and s.top() == 5 and len(s) == 1
s.pop()
try:
    s.$get()
except IndexError:
    pass
else:
    raise AssertionError
''',
        alternatives=[
            "A more memory-frugal variant keeps a second stack that only receives a value when it is less than or "
            "equal to the current minimum, and pops from it when the popped value equals its top. That saves space "
            "when minima change rarely, but the equality handling for duplicates is easy to get wrong. There is also "
            "an encoding trick that stores 2x - min to avoid any auxiliary storage, but it only works for numbers and "
            "obscures the code. The pair approach is the clearest.",
        ])


@family
def queue_two_stacks(rng, long):
    v = dict(cls=rng.choice(["StackQueue", "TwoStackQueue", "QueueFromStacks"]),
             add=rng.choice(["enqueue", "put", "push"]),
             rem=rng.choice(["dequeue", "get", "pop_front"]))
    v.update(fn=v["cls"], arg="", what="class")
    return build(rng, v, long=long, cx="amortised O(1) per operation",
        instruction=[
            "Implement a FIFO queue class `$cls` using only two Python lists as stacks, with methods `$add(x)`, "
            "`$rem()`, `peek()` and `__len__`. `$rem` and `peek` raise IndexError when empty.",
            "Build `$cls`, a queue implemented with two stacks. Support `$add`, `$rem`, `peek` and `len()`, with "
            "amortised O(1) operations.",
        ],
        reasoning=[
            ["One stack receives new elements, the other serves them in reversed order.",
             "The idea is an inbox stack for pushes and an outbox stack for pops."],
            ["When the outbox is empty and I need the front, I move everything from the inbox to the outbox, which "
             "reverses the order.",
             "Transferring the inbox into the outbox reverses it, so the oldest element ends up on top."],
            ["I only transfer when the outbox is empty, otherwise I'd break the ordering.",
             "Crucially, the transfer happens only when the outbox is empty; doing it earlier would interleave "
             "elements incorrectly."],
            ["Each element is moved at most once, so the cost is amortised O(1).",
             "Every element is pushed and popped at most twice in total, giving amortised constant time."],
            ["Length is simply the sum of both stacks' sizes.", None],
        ],
        intention=[
            "Push onto an inbox list; when serving, refill the outbox from the inbox only if it is empty, then pop "
            "from it.",
            "Use an inbox and an outbox stack, transferring lazily to get amortised O(1) FIFO operations.",
        ],
        code=r'''
class $cls:
    """FIFO queue built from two LIFO stacks."""

    def __init__(self):
        self._inbox = []
        self._outbox = []

    def $add(self, x):
        self._inbox.append(x)

    def _refill(self):
        if not self._outbox:
            while self._inbox:
                self._outbox.append(self._inbox.pop())
        if not self._outbox:
            raise IndexError("queue is empty")

    def $rem(self):
        self._refill()
        return self._outbox.pop()

    def peek(self):
        self._refill()
        return self._outbox[-1]

    def __len__(self):
        return len(self._inbox) + len(self._outbox)
''',
        test='''
q = $cls()
q.$add(1); q.$add(2)
assert q.$rem() == 1
q.$add(3)
assert q.peek() == 2 and len(q) == 2
assert q.$rem() == 2 and q.$rem() == 3
try:
    q.$rem()
except IndexError:
    pass
else:
    raise AssertionError
''',
        alternatives=[
            "In production Python I would just use collections.deque, which gives O(1) appends and pops at both ends, "
            "and a plain list with pop(0) would be a mistake because that is O(n). The two-stack construction is still "
            "worth knowing because it translates to settings where only stacks are available, such as purely "
            "functional languages where it becomes the classic banker's queue. A variant that transfers eagerly on "
            "every enqueue would be O(n) per operation, so the lazy transfer is the whole point.",
        ])


@family
def lru_cache(rng, long):
    v = dict(cls=rng.choice(["LRUCache", "LeastRecentlyUsedCache", "BoundedCache"]),
             cap=rng.choice(["capacity", "max_size", "limit"]))
    v.update(fn=v["cls"], arg=v["cap"], what="class")
    return build(rng, v, long=long, cx="O(1) time per get and put",
        instruction=[
            "Implement a class `$cls($cap)` with `get(key)` returning the value or -1, and `put(key, value)` which "
            "evicts the least recently used entry when the cache exceeds `$cap`. Both should be O(1).",
            "Write an LRU cache class `$cls`. `get` marks a key as recently used and returns -1 for misses; `put` "
            "inserts or updates and evicts the least recently used key when full.",
        ],
        reasoning=[
            ["I need O(1) lookup plus O(1) recency updates, the classic hash map plus doubly linked list combination.",
             "Lookups want a dict and recency ordering wants a linked list; together they give O(1) for everything."],
            ["Python's OrderedDict already is a dict with a linked list inside, offering move_to_end and "
             "popitem(last=False).",
             "collections.OrderedDict provides exactly the needed operations: move_to_end for touches and "
             "popitem(last=False) for eviction."],
            ["On get, a hit moves the key to the end; a miss returns -1 without changing anything.",
             "A successful get must refresh recency, otherwise the eviction order is wrong."],
            ["On put, I insert or update and move the key to the end, then evict from the front if the size exceeds "
             "$cap.",
             "Updating an existing key also counts as a use, so it moves to the most-recent end."],
            ["A capacity of zero or less should be rejected in the constructor.", None],
        ],
        intention=[
            "Wrap an OrderedDict: move keys to the end on access and pop from the front when over capacity.",
            "Use OrderedDict for O(1) lookup and recency tracking, evicting the oldest entry once $cap is exceeded.",
        ],
        code=r'''
from collections import OrderedDict


class $cls:
    """Least-recently-used cache with O(1) get and put."""

    def __init__(self, $cap):
        if $cap <= 0:
            raise ValueError("$cap must be positive")
        self.$cap = $cap
        self._data = OrderedDict()

    def get(self, key):
        if key not in self._data:
            return -1
        self._data.move_to_end(key)
        return self._data[key]

    def put(self, key, value):
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.$cap:
            self._data.popitem(last=False)
''',
        test='''
c = $cls(2)
c.put(1, 1); c.put(2, 2)
assert c.get(1) == 1
c.put(3, 3)
assert c.get(2) == -1
c.put(4, 4)
assert c.get(1) == -1 and c.get(3) == 3 and c.get(4) == 4
c.put(3, 30)
c.put(5, 5)
assert c.get(4) == -1 and c.get(3) == 30
''',
        alternatives=[
            "Without OrderedDict I would write a doubly linked list with sentinel head and tail nodes and a dict from "
            "key to node. That is the implementation interviewers often want to see, and it makes the O(1) argument "
            "explicit, but it is around forty lines with several pointer updates that are easy to get wrong. A plain "
            "dict plus a list of keys would be simpler still, but removing a key from the middle of a list is O(n), "
            "defeating the purpose. functools.lru_cache is a decorator for memoising functions, not a general "
            "key-value container, so it does not fit this interface.",
        ])


@family
def grid_shortest_path(rng, long):
    v = dict(fn=rng.choice(["shortest_path_length", "grid_bfs", "min_steps"]),
             arg=rng.choice(["grid", "maze", "board"]))
    return build(rng, v, long=long, cx="O(R * C) time and space",
        instruction=[
            "Write `$fn($arg)` where `$arg` is a list of strings made of '.' (open) and '#' (wall). Return the minimum "
            "number of 4-directional steps from the top-left to the bottom-right cell, or -1 if unreachable.",
            "Implement `$fn($arg)`: find the length of the shortest path through a grid of open cells '.' and walls "
            "'#', moving up, down, left or right, from (0, 0) to the opposite corner. Return -1 if there is no path.",
        ],
        reasoning=[
            ["All moves cost the same, so breadth-first search finds shortest paths.",
             "With unit edge weights, BFS is the right tool: the first time it reaches a cell is via a shortest path."],
            ["I'll use a deque of (row, col, distance) and a visited set, marking cells when they are enqueued, not "
             "when dequeued.",
             "Marking cells as visited at enqueue time prevents the same cell from entering the queue many times."],
            ["If the start or end is a wall, the answer is -1 immediately.",
             "Edge cases: an empty grid, or a blocked start or goal, return -1."],
            ["A 1x1 open grid has distance 0.", None],
            ["Neighbours are generated from four direction offsets with a bounds check.",
             "For each cell I try the four offsets and skip anything out of bounds or a wall."],
            ["Each cell is processed once, so the work is linear in the grid size.", None],
        ],
        intention=[
            "Run BFS from the top-left corner over open cells and return the distance when the bottom-right is "
            "dequeued.",
            "Breadth-first search with a deque and visited set; unreachable goals give -1.",
        ],
        code=r'''
from collections import deque


def $fn($arg):
    """Return the fewest 4-directional steps from top-left to bottom-right, or -1."""
    if not $arg or not $arg[0]:
        return -1
    rows, cols = len($arg), len($arg[0])
    if $arg[0][0] == "#" or $arg[rows - 1][cols - 1] == "#":
        return -1
    queue = deque([(0, 0, 0)])
    seen = {(0, 0)}
    while queue:
        r, c, dist = queue.popleft()
        if (r, c) == (rows - 1, cols - 1):
            return dist
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < rows and 0 <= nc < cols and $arg[nr][nc] == "." and (nr, nc) not in seen:
                seen.add((nr, nc))
                queue.append((nr, nc, dist + 1))
    return -1
''',
        test='''
assert $fn(["..#", "#..", "#.."]) == 4
assert $fn([".#", "#."]) == -1
assert $fn(["."]) == 0
assert $fn([]) == -1
assert $fn(["....", "###.", "....", ".###", "...."]) == 13
''',
        alternatives=[
            "Depth-first search would also find whether a path exists, but it does not find the shortest one without "
            "exploring every path, which is exponential in the worst case. Dijkstra's algorithm would be correct but "
            "its priority queue is unnecessary overhead when every edge weighs one. If the grid were very large and "
            "the goal known, A* with the Manhattan distance heuristic could explore fewer cells, and bidirectional BFS "
            "roughly halves the search radius, but plain BFS is optimal in the worst case and much simpler.",
        ])


@family
def connected_components(rng, long):
    v = dict(fn=rng.choice(["count_components", "connected_components", "num_components"]),
             n=rng.choice(["n", "num_nodes", "size"]),
             e=rng.choice(["edges", "links", "pairs"]))
    v["arg"] = v["e"]
    return build(rng, v, long=long, cx="O(V + E) time and space",
        instruction=[
            "Write `$fn($n, $e)` that returns the number of connected components in an undirected graph with nodes "
            "`0..$n-1` and the given list of edges.",
            "Implement `$fn($n, $e)`: given the node count and an edge list of an undirected graph, count how many "
            "connected components it has. Isolated nodes count as components.",
        ],
        reasoning=[
            ["I'll build an adjacency list and run a traversal from every unvisited node; each new start is a new "
             "component.",
             "The standard method: for each node not yet seen, traverse its whole component and increment the "
             "counter."],
            ["An iterative DFS with an explicit stack avoids recursion limits on long chains.",
             "I'll use an explicit stack rather than recursion so a path graph with many nodes doesn't overflow."],
            ["Isolated nodes never appear in the edge list but still count, so the outer loop must go over all $n "
             "nodes.",
             "Nodes with no edges are their own components; looping over range($n) handles them."],
            ["Self-loops and duplicate edges are harmless thanks to the visited set.", None],
            ["Union-find would work too, but a traversal is just as fast here and simpler to read.",
             None],
        ],
        intention=[
            "Build an adjacency list and count how many times an iterative DFS must be started from an unvisited node.",
            "Traverse each unvisited node's component with a stack-based DFS, counting the starts.",
        ],
        code=r'''
def $fn($n, $e):
    """Count connected components of an undirected graph on nodes 0..$n-1."""
    adjacency = [[] for _ in range($n)]
    for a, b in $e:
        adjacency[a].append(b)
        adjacency[b].append(a)
    seen = [False] * $n
    components = 0
    for start in range($n):
        if seen[start]:
            continue
        components += 1
        seen[start] = True
        stack = [start]
        while stack:
            node = stack.pop()
            for nxt in adjacency[node]:
                if not seen[nxt]:
                    seen[nxt] = True
                    stack.append(nxt)
    return components
''',
        test='''
assert $fn(5, [(0, 1), (1, 2), (3, 4)]) == 2
assert $fn(3, []) == 3
assert $fn(0, []) == 0
assert $fn(4, [(0, 0), (1, 2), (2, 1)]) == 3
assert $fn(10000, [(i, i + 1) for i in range(9999)]) == 1
''',
        alternatives=[
            "Union-find (disjoint set union) with path compression and union by rank is the other classic approach. It "
            "starts with n singleton sets and decrements a counter on every successful union, which makes it ideal "
            "when edges arrive as a stream or when I need to answer connectivity queries interleaved with edge "
            "insertions. For a static edge list both approaches are effectively linear, and the traversal version "
            "avoids the extra parent and rank arrays, so I'll go with DFS.",
        ])


@family
def topo_sort(rng, long):
    v = dict(fn=rng.choice(["topological_order", "topo_sort", "course_order"]),
             arg=rng.choice(["deps", "graph", "prereqs"]))
    return build(rng, v, long=long, cx="O(V + E) time",
        instruction=[
            "Write `$fn($arg)` where `$arg` maps each task to a list of tasks it depends on. Return a list ordering "
            "all tasks so that dependencies come first, or raise ValueError if there is a cycle. Break ties "
            "alphabetically.",
            "Implement `$fn($arg)`: given a dict from item to its prerequisites, produce a topological order "
            "(prerequisites before dependants), choosing the smallest available item at each step. Raise ValueError on "
            "cycles.",
        ],
        reasoning=[
            ["Kahn's algorithm fits well: repeatedly take a node with no remaining prerequisites.",
             "I'll use Kahn's algorithm, which processes nodes whose in-degree has dropped to zero."],
            ["Prerequisites may appear only as values, never as keys, so I must collect every node from both.",
             "Some dependencies might not be keys in the dict, so the node set is keys plus all listed dependencies."],
            ["For the alphabetical tie-break I'll keep ready nodes in a min-heap instead of a plain queue.",
             "A heap of ready nodes gives a deterministic, smallest-first order."],
            ["I'll build a reverse map from each prerequisite to its dependants so finishing a node can decrement "
             "their counts.",
             "Each node needs a list of dependants so I can lower their remaining-prerequisite counts when it is "
             "emitted."],
            ["If the output has fewer nodes than the graph, some nodes were stuck in a cycle, so I raise ValueError.",
             "A cycle shows up as nodes that never reach zero in-degree; comparing lengths detects it."],
        ],
        intention=[
            "Run Kahn's algorithm with a min-heap of ready nodes and raise ValueError if not every node gets emitted.",
            "Count prerequisites per node, repeatedly pop the smallest ready node, and detect cycles by the final "
            "length.",
        ],
        code=r'''
import heapq


def $fn($arg):
    """Return a dependency-respecting order of all nodes, ties broken by name."""
    nodes = set($arg)
    for requirements in $arg.values():
        nodes.update(requirements)
    remaining = {node: 0 for node in nodes}
    dependants = {node: [] for node in nodes}
    for node, requirements in $arg.items():
        for req in set(requirements):
            remaining[node] += 1
            dependants[req].append(node)
    ready = [node for node in nodes if remaining[node] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for dep in dependants[node]:
            remaining[dep] -= 1
            if remaining[dep] == 0:
                heapq.heappush(ready, dep)
    if len(order) != len(nodes):
        raise ValueError("dependency cycle detected")
    return order
''',
        test='''
assert $fn({"c": ["a", "b"], "b": ["a"], "a": []}) == ["a", "b", "c"]
assert $fn({"x": ["y"], "z": []}) == ["y", "x", "z"]
assert $fn({}) == []
try:
    $fn({"a": ["b"], "b": ["a"]})
except ValueError:
    pass
else:
    raise AssertionError
''',
        alternatives=[
            "A DFS-based topological sort appends each node after visiting all its prerequisites and uses three "
            "colours (unvisited, in progress, done) to detect back edges, which indicate cycles. It is elegant but "
            "recursive, and getting a specific tie-break order out of it is awkward because the order depends on the "
            "traversal order in subtle ways. Python also ships graphlib.TopologicalSorter since 3.9, which would be "
            "the pragmatic choice in real code, but it does not promise alphabetical ordering, so I'll implement "
            "Kahn's algorithm directly.",
        ])


@family
def dijkstra(rng, long):
    v = dict(fn=rng.choice(["dijkstra", "shortest_distances", "min_costs"]),
             arg=rng.choice(["graph", "adj", "network"]),
             src=rng.choice(["source", "start", "origin"]))
    return build(rng, v, long=long, cx="O((V + E) log V) time with a binary heap",
        instruction=[
            "Write `$fn($arg, $src)` where `$arg` maps each node to a list of `(neighbor, weight)` pairs with "
            "non-negative weights. Return a dict of shortest distances from `$src` to every reachable node.",
            "Implement Dijkstra's algorithm as `$fn($arg, $src)`. The graph is an adjacency dict with non-negative "
            "edge weights; return the minimum distance to each node reachable from `$src`.",
        ],
        reasoning=[
            ["Non-negative weights mean Dijkstra's algorithm applies.",
             "Since weights are non-negative, the greedy choice of the closest unsettled node is safe."],
            ["I'll use heapq as a priority queue of (distance, node) entries.",
             "A binary heap of (distance, node) tuples gives efficient extraction of the closest node."],
            ["Python's heapq has no decrease-key, so I'll push duplicates and skip stale entries whose distance is "
             "larger than the recorded one.",
             "Instead of decrease-key I'll allow duplicate entries and ignore any popped entry that is outdated."],
            ["Nodes that only appear as neighbours might be missing as keys, so I'll use $arg.get(node, ()).",
             "Some nodes may have no outgoing edges and no key, so lookups should default to an empty list."],
            ["Unreachable nodes are simply absent from the result.",
             "The result only contains reachable nodes, which the statement allows."],
        ],
        intention=[
            "Run Dijkstra with a heap of (distance, node), lazily skipping stale entries, and return the settled "
            "distances.",
            "Greedily settle the closest node using heapq, relaxing its edges, until the heap is empty.",
        ],
        code=r'''
import heapq


def $fn($arg, $src):
    """Return shortest distances from $src in a non-negatively weighted graph."""
    dist = {$src: 0}
    heap = [(0, $src)]
    while heap:
        d, node = heapq.heappop(heap)
        if d > dist[node]:
            continue  # stale entry
        for neighbor, weight in $arg.get(node, ()):
            candidate = d + weight
            if candidate < dist.get(neighbor, float("inf")):
                dist[neighbor] = candidate
                heapq.heappush(heap, (candidate, neighbor))
    return dist
''',
        test='''
g = {"a": [("b", 1), ("c", 4)], "b": [("c", 2), ("d", 5)], "c": [("d", 1)]}
assert $fn(g, "a") == {"a": 0, "b": 1, "c": 3, "d": 4}
assert $fn({}, "x") == {"x": 0}
assert $fn({"a": [("b", 0)], "z": [("a", 1)]}, "a") == {"a": 0, "b": 0}
''',
        alternatives=[
            "Bellman-Ford would also work and even supports negative weights, but at O(VE) it is much slower and "
            "unnecessary here. For dense graphs an array-based Dijkstra that scans for the minimum is O(V^2) and can "
            "beat the heap version, but adjacency lists suggest a sparse graph. A Fibonacci heap improves the "
            "theoretical bound to O(E + V log V), but in Python the constant factors make the lazy binary-heap version "
            "the practical choice.",
        ])


@family
def lcs(rng, long):
    v = dict(fn=rng.choice(["lcs_length", "longest_common_subsequence", "common_subseq_len"]),
             a=rng.choice(["a", "first", "s1"]), b=rng.choice(["b", "second", "s2"]))
    v["arg"] = v["a"]
    return build(rng, v, long=long, cx="O(m * n) time and O(n) space",
        instruction=[
            "Write `$fn($a, $b)` that returns the length of the longest common subsequence of two strings.",
            "Implement `$fn($a, $b)`: compute how long the longest sequence of characters is that appears in both "
            "strings in the same relative order, not necessarily contiguously.",
        ],
        reasoning=[
            ["This is textbook dynamic programming over prefixes.",
             "Let dp[i][j] be the LCS length of the first i characters of $a and the first j of $b."],
            ["If the last characters match, dp[i][j] = dp[i-1][j-1] + 1; otherwise it is the max of dropping one "
             "character from either string.",
             "The recurrence either extends a match diagonally or takes the better of skipping a character in one "
             "string."],
            ["Each row depends only on the previous row, so I can keep two rows and use O(n) memory.",
             "Only the previous row is needed, so a rolling pair of lists is enough."],
            ["Empty strings give 0 naturally from the zero-initialised row.", None],
            ["Time is O(m * n), which is fine for strings of a few thousand characters.", None],
        ],
        intention=[
            "Fill the prefix DP table row by row, keeping only the previous row, and return the final cell.",
            "Classic LCS dynamic programming with a rolling row for O(n) memory.",
        ],
        code=r'''
def $fn($a, $b):
    """Return the length of the longest common subsequence of $a and $b."""
    prev = [0] * (len($b) + 1)
    for ch_a in $a:
        curr = [0]
        for j, ch_b in enumerate($b, start=1):
            if ch_a == ch_b:
                curr.append(prev[j - 1] + 1)
            else:
                curr.append(max(prev[j], curr[j - 1]))
        prev = curr
    return prev[-1]
''',
        test='''
assert $fn("abcde", "ace") == 3
assert $fn("abc", "def") == 0
assert $fn("", "abc") == 0
assert $fn("AGGTAB", "GXTXAYB") == 4
''',
        alternatives=[
            "A memoised recursive solution with functools.lru_cache mirrors the recurrence directly and is easy to "
            "verify, but it uses O(m * n) memory for the cache and recursion depth up to m + n, which fails for long "
            "strings. If I needed the actual subsequence rather than its length, I would keep the full table and "
            "backtrack from the corner, or use Hirschberg's divide and conquer to recover it in linear space. For just "
            "the length, the rolling row is optimal in space.",
        ])


@family
def edit_distance(rng, long):
    v = dict(fn=rng.choice(["edit_distance", "levenshtein", "min_edits"]),
             a=rng.choice(["source", "word1", "a"]), b=rng.choice(["target", "word2", "b"]))
    v["arg"] = v["a"]
    return build(rng, v, long=long, cx="O(m * n) time and O(n) space",
        instruction=[
            "Write `$fn($a, $b)` that returns the Levenshtein distance between two strings: the minimum number of "
            "single-character insertions, deletions and substitutions turning `$a` into `$b`.",
            "Implement `$fn($a, $b)` computing the minimum edit distance with unit costs for insert, delete and "
            "replace.",
        ],
        reasoning=[
            ["Define dp[i][j] as the distance between the first i characters of $a and the first j of $b.",
             "Dynamic programming over prefixes is the standard approach."],
            ["Base cases: transforming a prefix into the empty string costs its length, so the first row and column "
             "are 0..n and 0..m.",
             "The first row is 0, 1, ..., len($b), since building a prefix of $b from nothing takes that many "
             "insertions."],
            ["If characters match, dp[i][j] = dp[i-1][j-1]; otherwise 1 plus the min of delete, insert and replace.",
             "For a mismatch I take one plus the cheapest of the three neighbouring cells."],
            ["Only the previous row is needed, so memory is O(len($b)).",
             "I'll roll rows to keep memory linear."],
            ["Identical strings give 0 and an empty side gives the other's length.", None],
        ],
        intention=[
            "Compute the Levenshtein DP row by row starting from the 0..n base row and return the last cell.",
            "Rolling-row dynamic programming over prefixes with unit insert, delete and replace costs.",
        ],
        code=r'''
def $fn($a, $b):
    """Return the Levenshtein distance between $a and $b."""
    prev = list(range(len($b) + 1))
    for i, ch_a in enumerate($a, start=1):
        curr = [i]
        for j, ch_b in enumerate($b, start=1):
            if ch_a == ch_b:
                curr.append(prev[j - 1])
            else:
                curr.append(1 + min(prev[j], curr[j - 1], prev[j - 1]))
        prev = curr
    return prev[-1]
''',
        test='''
assert $fn("kitten", "sitting") == 3
assert $fn("horse", "ros") == 3
assert $fn("", "abc") == 3
assert $fn("same", "same") == 0
''',
        alternatives=[
            "If only a yes/no answer for distance at most k were needed, a banded DP that only fills cells within k of "
            "the diagonal would run in O(k * n). Damerau-Levenshtein additionally counts adjacent transpositions as "
            "one edit, which changes the recurrence; the statement only lists three operations, so plain Levenshtein "
            "is right. Swapping the arguments so the shorter string indexes the row would reduce memory slightly, but "
            "the result is symmetric anyway.",
        ])


@family
def coin_change(rng, long):
    v = dict(fn=rng.choice(["min_coins", "coin_change", "fewest_coins"]),
             c=rng.choice(["coins", "denominations", "values"]),
             amt=rng.choice(["amount", "total", "target"]))
    v["arg"] = v["c"]
    return build(rng, v, long=long, cx="O(amount * len(coins)) time and O(amount) space",
        instruction=[
            "Write `$fn($c, $amt)` that returns the fewest coins needed to make up `$amt` using unlimited coins of the "
            "given positive denominations, or -1 if it is impossible.",
            "Implement `$fn($c, $amt)`: with an unlimited supply of each coin value, find the minimum number of coins "
            "summing exactly to `$amt`. Return -1 when no combination works.",
        ],
        reasoning=[
            ["Greedy fails for arbitrary denominations, e.g. coins [1, 3, 4] and amount 6: greedy gives 4+1+1 but 3+3 "
             "is better.",
             "Greedy picking the largest coin is only correct for canonical coin systems, so I need DP."],
            ["Let best[x] be the fewest coins for amount x; best[0] = 0 and best[x] = 1 + min(best[x - c]) over coins "
             "c <= x.",
             "Bottom-up DP over amounts 0..$amt works: each amount tries every coin as the last one."],
            ["I'll use infinity for unreachable amounts and convert to -1 at the end.",
             "Unreachable states hold float('inf'), and the final answer maps inf to -1."],
            ["Amount 0 needs zero coins.", None],
        ],
        intention=[
            "Bottom-up DP over amounts where each amount takes one plus the best of the amounts reachable by removing "
            "a coin.",
            "Fill best[0..$amt] with the minimum coin count, using infinity for impossible amounts.",
        ],
        code=r'''
def $fn($c, $amt):
    """Return the minimum number of coins summing to $amt, or -1."""
    inf = float("inf")
    best = [0] + [inf] * $amt
    for x in range(1, $amt + 1):
        for coin in $c:
            if coin <= x and best[x - coin] + 1 < best[x]:
                best[x] = best[x - coin] + 1
    return best[$amt] if best[$amt] != inf else -1
''',
        test='''
assert $fn([1, 2, 5], 11) == 3
assert $fn([2], 3) == -1
assert $fn([1], 0) == 0
assert $fn([1, 3, 4], 6) == 2
''',
        alternatives=[
            "BFS over amounts, where each edge adds one coin, also finds the minimum count and can stop early once the "
            "target is reached; it is sometimes faster in practice but uses a queue and visited set of the same size "
            "as the DP table. Top-down recursion with memoisation is another option, but the recursion depth equals "
            "the amount divided by the smallest coin, which can blow the stack. The bottom-up table is simple and "
            "predictable.",
        ])


@family
def knapsack(rng, long):
    v = dict(fn=rng.choice(["knapsack", "max_value", "best_pack"]),
             w=rng.choice(["weights", "sizes", "costs"]),
             val=rng.choice(["values", "profits", "gains"]),
             cap=rng.choice(["capacity", "budget", "limit"]))
    v["arg"] = v["w"]
    return build(rng, v, long=long, cx="O(n * capacity) time and O(capacity) space",
        instruction=[
            "Write `$fn($w, $val, $cap)` solving the 0/1 knapsack problem: each item can be taken at most once; return "
            "the maximum total value with total weight at most `$cap`.",
            "Implement `$fn($w, $val, $cap)`. Given item weights and values (non-negative integers), choose a subset "
            "whose weight does not exceed `$cap` and maximise its value. Return that maximum.",
        ],
        reasoning=[
            ["This is 0/1 knapsack, which has a standard O(n * W) DP.",
             "Brute force over subsets is 2^n, so I'll use the capacity-indexed DP."],
            ["best[c] is the best value achievable with capacity c using the items seen so far.",
             "A one-dimensional table over capacities suffices."],
            ["For 0/1 semantics I must iterate capacities downward, so each item is used at most once per pass.",
             "The crucial detail is the descending capacity loop; ascending would allow reusing an item, which is the "
             "unbounded variant."],
            ["Zero capacity or no items yields 0.", None],
            ["The weights and values lists must have the same length; zip pairs them up.", None],
        ],
        intention=[
            "Use a 1-D DP over capacities, updating from high to low for each item so it's taken at most once.",
            "Capacity-indexed DP with a descending inner loop to enforce 0/1 selection.",
        ],
        code=r'''
def $fn($w, $val, $cap):
    """Return the maximum value of items fitting in $cap (each item once)."""
    best = [0] * ($cap + 1)
    for weight, value in zip($w, $val):
        for c in range($cap, weight - 1, -1):
            candidate = best[c - weight] + value
            if candidate > best[c]:
                best[c] = candidate
    return best[$cap]
''',
        test='''
assert $fn([1, 3, 4, 5], [1, 4, 5, 7], 7) == 9
assert $fn([10], [5], 5) == 0
assert $fn([], [], 10) == 0
assert $fn([2, 2], [3, 3], 4) == 6
''',
        alternatives=[
            "When capacity is huge but values are small, the DP can be flipped to index by total value and store the "
            "minimum weight needed for each value, which is O(n * sum(values)). Meet-in-the-middle enumerates subsets "
            "of each half and combines them with a sorted sweep, practical up to about 40 items regardless of "
            "capacity. Branch and bound with the fractional relaxation as an upper bound often works well in practice "
            "too. For moderate integer capacities the classic table is the clear choice.",
        ])


@family
def lis(rng, long):
    v = dict(fn=rng.choice(["lis_length", "longest_increasing_subsequence", "longest_rising_run"]),
             arg=rng.choice(["nums", "seq", "values"]))
    return build(rng, v, long=long, cx="O(n log n) time and O(n) space",
        instruction=[
            "Write `$fn($arg)` that returns the length of the longest strictly increasing subsequence of a list of "
            "numbers.",
            "Implement `$fn($arg)` in O(n log n): find the length of the longest subsequence (not necessarily "
            "contiguous) whose elements strictly increase.",
        ],
        reasoning=[
            ["The O(n^2) DP compares each element with all earlier ones; it works but is slow for large inputs.",
             "A quadratic DP is the obvious baseline, but there is a well-known O(n log n) method."],
            ["Patience sorting: keep tails[k] = the smallest possible tail of an increasing subsequence of length k + "
             "1.",
             "I maintain a sorted list of the smallest tail value for each subsequence length."],
            ["For each value, binary-search the first tail >= value and replace it, or append if none exists.",
             "bisect_left finds where the value goes; replacing keeps tails minimal, appending extends the longest "
             "length."],
            ["Using bisect_left rather than bisect_right enforces strict increase, so equal values don't extend a "
             "subsequence.",
             "Strictness matters: with duplicates, bisect_left makes equal elements replace rather than extend."],
            ["The answer is len(tails); note tails itself is not necessarily an actual subsequence.", None],
        ],
        intention=[
            "Maintain minimal tails per length with bisect_left and return the number of tails.",
            "Patience-sorting style LIS: binary search each value into the tails list, replacing or appending.",
        ],
        code=r'''
from bisect import bisect_left


def $fn($arg):
    """Return the length of the longest strictly increasing subsequence."""
    tails = []
    for value in $arg:
        pos = bisect_left(tails, value)
        if pos == len(tails):
            tails.append(value)
        else:
            tails[pos] = value
    return len(tails)
''',
        test='''
assert $fn([10, 9, 2, 5, 3, 7, 101, 18]) == 4
assert $fn([7, 7, 7]) == 1
assert $fn([]) == 0
assert $fn([1, 2, 3, 4]) == 4
''',
        alternatives=[
            "The quadratic DP, dp[i] = 1 + max(dp[j] for j < i with a[j] < a[i]), is easier to extend, for instance to "
            "count the number of longest subsequences or to reconstruct one via parent pointers. The patience method "
            "can reconstruct too if I store, for each element, the index of the tail it was placed after. A Fenwick "
            "tree over compressed values gives another O(n log n) solution that generalises to weighted variants, but "
            "for the plain length the bisect approach is shortest.",
        ])


@family
def rotate_matrix(rng, long):
    v = dict(fn=rng.choice(["rotate_clockwise", "rotate_matrix", "rotate90"]),
             arg=rng.choice(["matrix", "grid", "m"]))
    return build(rng, v, long=long, cx="O(R * C) time",
        instruction=[
            "Write `$fn($arg)` that returns a new matrix equal to the given rectangular matrix (list of lists) rotated "
            "90 degrees clockwise. Do not modify the input.",
            "Implement `$fn($arg)`: rotate a 2-D list 90 degrees clockwise and return the result as a new list of "
            "lists. The matrix need not be square.",
        ],
        reasoning=[
            ["A clockwise rotation maps element (r, c) of an R x C matrix to position (c, R - 1 - r) of a C x R "
             "result.",
             "Clockwise rotation is the same as reversing the row order and then transposing."],
            ["In Python, zip(*reversed($arg)) does exactly that: reversing rows then transposing.",
             "zip(*rows) transposes, so zip(*$arg[::-1]) gives the rotation in one expression."],
            ["zip yields tuples, so I convert each to a list to return a proper list of lists.",
             "I need list(row) for each tuple so the output type matches the input."],
            ["Since the statement says not to mutate, building a new matrix is exactly right; the in-place layer swap "
             "only works for squares anyway.",
             "The in-place four-way swap only applies to square matrices, so a new matrix is the general solution."],
            ["An empty matrix should return an empty list.", None],
        ],
        intention=[
            "Reverse the rows and transpose with zip, converting tuples back into lists.",
            "Return [list(row) for row in zip(*reversed($arg))], which is a clockwise rotation.",
        ],
        code=r'''
def $fn($arg):
    """Return $arg rotated 90 degrees clockwise as a new list of lists.

    Reversing the row order and then transposing with zip() is equivalent
    to a clockwise rotation.  The input matrix is never modified.
    """
    reversed_rows = $arg[::-1]
    return [list(column) for column in zip(*reversed_rows)]
''',
        test='''
assert $fn([[1, 2, 3], [4, 5, 6]]) == [[4, 1], [5, 2], [6, 3]]
assert $fn([[1, 2], [3, 4]]) == [[3, 1], [4, 2]]
assert $fn([]) == []
m = [[1]]
assert $fn(m) == [[1]] and m == [[1]]
''',
        alternatives=[
            "The index-based version, result[c][R - 1 - r] = matrix[r][c] over a pre-allocated C x R list, is more "
            "explicit and translates directly to languages without zip; it is a good way to convince myself the "
            "formula is right. For square matrices an in-place solution either swaps four cells per step layer by "
            "layer or transposes in place and then reverses each row. That saves memory but mutates the input, which "
            "the statement forbids.",
        ])


@family
def spiral_order(rng, long):
    v = dict(fn=rng.choice(["spiral_order", "spiral", "read_spiral"]),
             arg=rng.choice(["matrix", "grid", "table"]))
    return build(rng, v, long=long, cx="O(R * C) time",
        instruction=[
            "Write `$fn($arg)` that returns all elements of a rectangular matrix in clockwise spiral order, starting "
            "at the top-left corner.",
            "Implement `$fn($arg)`: traverse a 2-D list in a clockwise spiral (right, down, left, up, repeating "
            "inward) and return the visited values as a flat list.",
        ],
        reasoning=[
            ["I'll maintain four boundaries: top, bottom, left and right.",
             "Shrinking boundaries is the cleanest way to model the spiral."],
            ["Each loop iteration walks the top row, the right column, then the bottom row backwards and the left "
             "column upwards, shrinking each boundary afterwards.",
             "One lap consists of four edges, and after each edge the corresponding boundary moves inward."],
            ["The tricky part is single rows or columns in the middle; I must check top <= bottom before walking the "
             "bottom row and left <= right before walking the left column.",
             "Without guards, a matrix with one remaining row would be traversed twice, so the last two edges need "
             "boundary checks."],
            ["Empty matrices, including [[]], return an empty list.", None],
        ],
        intention=[
            "Walk the four edges of a shrinking boundary box, guarding the bottom and left passes against double "
            "counting.",
            "Maintain top/bottom/left/right bounds and peel the matrix layer by layer.",
        ],
        code=r'''
def $fn($arg):
    """Return the elements of $arg in clockwise spiral order."""
    result = []
    if not $arg or not $arg[0]:
        return result
    top, bottom = 0, len($arg) - 1
    left, right = 0, len($arg[0]) - 1
    while top <= bottom and left <= right:
        for c in range(left, right + 1):
            result.append($arg[top][c])
        top += 1
        for r in range(top, bottom + 1):
            result.append($arg[r][right])
        right -= 1
        if top <= bottom:
            for c in range(right, left - 1, -1):
                result.append($arg[bottom][c])
            bottom -= 1
        if left <= right:
            for r in range(bottom, top - 1, -1):
                result.append($arg[r][left])
            left += 1
    return result
''',
        test='''
assert $fn([[1, 2, 3], [4, 5, 6], [7, 8, 9]]) == [1, 2, 3, 6, 9, 8, 7, 4, 5]
assert $fn([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]) == [1, 2, 3, 4, 8, 12, 11, 10, 9, 5, 6, 7]
assert $fn([[1], [2], [3]]) == [1, 2, 3]
assert $fn([[]]) == []
''',
        alternatives=[
            "A direction-vector simulation walks one cell at a time and turns right whenever the next cell is out of "
            "bounds or already visited. It needs a visited matrix, O(R * C) extra memory, but has no special cases for "
            "thin matrices. A cute recursive trick takes the first row and then recurses on the remaining matrix "
            "rotated counter-clockwise, which is short but quadratic because each rotation copies the matrix. The "
            "boundary version is linear with constant extra space.",
        ])


@family
def mat_mul(rng, long):
    v = dict(fn=rng.choice(["matmul", "matrix_multiply", "mat_product"]),
             a=rng.choice(["a", "left", "m1"]), b=rng.choice(["b", "right", "m2"]))
    v["arg"] = v["a"]
    return build(rng, v, long=long, cx="O(n * m * p) time",
        instruction=[
            "Write `$fn($a, $b)` that multiplies two matrices given as lists of lists and returns the product. Raise "
            "ValueError if the inner dimensions don't match.",
            "Implement `$fn($a, $b)` without numpy: return the matrix product of an n x m and an m x p matrix, raising "
            "ValueError on a dimension mismatch.",
        ],
        reasoning=[
            ["The product entry (i, j) is the dot product of row i of $a and column j of $b.",
             "Each output cell is a sum over the shared dimension."],
            ["The number of columns of $a must equal the number of rows of $b, otherwise I raise ValueError.",
             "First I validate shapes: len($a[0]) must equal len($b)."],
            ["Transposing $b once with zip(*$b) lets me pair rows with columns directly and keeps the inner loop "
             "simple.",
             "Precomputing the columns of $b via zip(*$b) avoids awkward column indexing."],
            ["I'll treat an empty left matrix as producing an empty result.", None],
            ["Cost is the usual cubic O(n * m * p); that's fine for a pure-Python helper.", None],
        ],
        intention=[
            "Validate the shared dimension, transpose $b, and build each output cell as a dot product of a row and a "
            "column.",
            "Check shapes, then compute sum(x * y) over zipped rows of $a and columns of $b.",
        ],
        code=r'''
def $fn($a, $b):
    """Return the matrix product $a x $b (lists of lists)."""
    if not $a:
        return []
    if len($a[0]) != len($b):
        raise ValueError("inner dimensions do not match")
    columns = list(zip(*$b))
    return [[sum(x * y for x, y in zip(row, col)) for col in columns] for row in $a]
''',
        test='''
assert $fn([[1, 2], [3, 4]], [[5, 6], [7, 8]]) == [[19, 22], [43, 50]]
assert $fn([[1, 2, 3]], [[1], [2], [3]]) == [[14]]
assert $fn([], [[1]]) == []
try:
    $fn([[1, 2]], [[1, 2]])
except ValueError:
    pass
else:
    raise AssertionError
''',
        alternatives=[
            "Strassen's algorithm reduces the multiplication count to about O(n^2.81) but only pays off for large "
            "matrices and adds a lot of complexity; in pure Python the interpreter overhead dominates anyway. "
            "Reordering loops to i-k-j improves cache behaviour in C, but in Python the main win is using zip and sum, "
            "which push the inner loop into C. For real workloads numpy.matmul would be the answer, but the task "
            "explicitly wants a dependency-free version.",
        ])


@family
def popcount(rng, long):
    v = dict(fn=rng.choice(["count_set_bits", "popcount", "hamming_weight"]),
             arg=rng.choice(["n", "value", "x"]))
    return build(rng, v, long=long, cx="O(k) time where k is the number of set bits",
        instruction=[
            "Write `$fn($arg)` that returns the number of 1 bits in the binary representation of a non-negative "
            "integer, without using bin() or int.bit_count().",
            "Implement `$fn($arg)`: count the set bits of a non-negative integer using bit manipulation. Raise "
            "ValueError for negative input.",
        ],
        reasoning=[
            ["Negative integers have infinitely many leading ones in Python's two's complement model, so I'll reject "
             "them.",
             "Python ints are unbounded, so a negative number has no finite popcount; ValueError is appropriate."],
            ["Kernighan's trick: $arg & ($arg - 1) clears the lowest set bit.",
             "Clearing the lowest set bit with x & (x - 1) repeatedly lets me count bits in as many steps as there are "
             "ones."],
            ["So I loop while the value is non-zero, clearing one bit and incrementing a counter each time.",
             "Each iteration removes exactly one set bit, so the loop count is the answer."],
            ["Zero has no set bits and returns 0 without entering the loop.", None],
        ],
        intention=[
            "Repeatedly clear the lowest set bit with x & (x - 1), counting iterations.",
            "Use Brian Kernighan's bit-clearing loop and return the number of iterations.",
        ],
        code=r'''
def $fn($arg):
    """Return the number of 1 bits in non-negative integer $arg."""
    if $arg < 0:
        raise ValueError("$arg must be non-negative")
    count = 0
    while $arg:
        $arg &= $arg - 1
        count += 1
    return count
''',
        test='''
assert $fn(0) == 0
assert $fn(11) == 3
assert $fn(255) == 8
assert $fn(2 ** 100) == 1
''',
        alternatives=[
            "The simplest approach shifts right one bit at a time and adds the lowest bit, which costs one iteration "
            "per bit of the number's length rather than per set bit. A table lookup on bytes processes eight bits at a "
            "time and is common in C. The SWAR trick with masks like 0x55555555 counts bits in parallel within a "
            "fixed-width word but doesn't apply cleanly to Python's arbitrary-size integers. In modern Python, "
            "int.bit_count() is the idiomatic answer, but the statement rules it out.",
        ])


@family
def power_of_two(rng, long):
    v = dict(fn=rng.choice(["is_power_of_two", "power_of_two", "is_pow2"]),
             arg=rng.choice(["n", "x", "value"]))
    return build(rng, v, long=long, cx="O(1) time for machine-sized integers",
        instruction=[
            "Write `$fn($arg)` that returns True if the integer `$arg` is a power of two (1, 2, 4, 8, ...), and False "
            "otherwise, including for zero and negative numbers.",
            "Implement `$fn($arg)` using a bit trick rather than a loop: decide whether an integer is an exact power "
            "of two.",
        ],
        reasoning=[
            ["A positive power of two has exactly one bit set.",
             "In binary, powers of two look like a single 1 followed by zeros."],
            ["Subtracting one flips that bit and sets all lower bits, so $arg & ($arg - 1) is zero exactly for powers "
             "of two.",
             "The expression x & (x - 1) clears the lowest set bit, so it's zero iff at most one bit was set."],
            ["Zero also satisfies x & (x - 1) == 0, so I need an explicit $arg > 0 check.",
             "The classic pitfall is zero, which must be excluded; negatives must be excluded too."],
            ["1 is 2 to the power 0 and should return True.", None],
        ],
        intention=[
            "Return $arg > 0 and $arg & ($arg - 1) == 0.",
            "Check positivity, then verify only one bit is set using the x & (x - 1) trick.",
        ],
        code=r'''
def $fn($arg):
    """Return True if $arg is a positive power of two.

    A power of two has exactly one bit set, so clearing its lowest set bit
    with ``$arg & ($arg - 1)`` leaves zero.  Zero and negatives are excluded.
    """
    if $arg <= 0:
        return False
    return $arg & ($arg - 1) == 0
''',
        test='''
assert [$fn(i) for i in range(-2, 9)] == [False, False, False, True, True, False, True, False, False, False, True]
assert $fn(2 ** 64)
assert not $fn(2 ** 64 + 1)
''',
        alternatives=[
            "A loop that divides by two while the number is even and then checks whether the result is one is easy to "
            "understand but takes logarithmic time. Using math.log2 and checking for an integer result is tempting but "
            "unreliable because of floating-point rounding for large values. Another correct trick is x & -x == x, "
            "which isolates the lowest set bit. Python's int.bit_count() == 1 works too on 3.10+, but the and-trick is "
            "portable and clear.",
        ])


@family
def single_number(rng, long):
    v = dict(fn=rng.choice(["single_number", "find_unpaired", "lonely_value"]),
             arg=rng.choice(["nums", "values", "items"]))
    return build(rng, v, long=long, cx="O(n) time and O(1) space",
        instruction=[
            "Every integer in `$arg` appears exactly twice except one, which appears once. Write `$fn($arg)` that "
            "returns that single value in O(n) time and O(1) extra space.",
            "Implement `$fn($arg)`: in a list where all elements come in pairs except one, find the unpaired element "
            "without using a dict or set.",
        ],
        reasoning=[
            ["XOR is associative and commutative, x ^ x = 0 and x ^ 0 = x.",
             "The key property is that XOR-ing a number with itself cancels it out."],
            ["XOR-ing everything together cancels every pair and leaves the single element.",
             "If I fold the whole list with XOR, the pairs vanish regardless of order."],
            ["This works for negative integers too, since Python's XOR on ints behaves like infinite two's complement.",
             None],
            ["A Counter would also work but uses O(n) memory, which the statement forbids.",
             "Sorting and scanning pairs would be O(n log n), so XOR is strictly better here."],
        ],
        intention=[
            "Fold the list with XOR starting from 0; pairs cancel and the unpaired value remains.",
            "Return the XOR of all elements.",
        ],
        code=r'''
def $fn($arg):
    """Return the element that appears once when all others appear twice."""
    result = 0
    for value in $arg:
        result ^= value
    return result
''',
        test='''
assert $fn([4, 1, 2, 1, 2]) == 4
assert $fn([7]) == 7
assert $fn([-3, 5, 5]) == -3
''',
        alternatives=[
            "The arithmetic trick 2 * sum(set(nums)) - sum(nums) also finds the answer in linear time, but building "
            "the set uses O(n) memory. Sorting and checking adjacent pairs uses O(1) extra memory if done in place, "
            "yet mutates the input and costs O(n log n). The XOR fold is the only approach that meets both bounds and "
            "leaves the input untouched, and functools.reduce(operator.xor, nums, 0) is an equivalent one-liner.",
        ])


@family
def gray_code(rng, long):
    v = dict(fn=rng.choice(["gray_code", "gray_sequence", "reflected_gray"]),
             arg=rng.choice(["n", "bits", "width"]))
    return build(rng, v, long=long, cx="O(2^n) time, proportional to the output",
        instruction=[
            "Write `$fn($arg)` that returns the `$arg`-bit reflected Gray code sequence as a list of integers starting "
            "at 0, where consecutive values differ in exactly one bit.",
            "Implement `$fn($arg)`: generate all 2**$arg integers in binary-reflected Gray code order.",
        ],
        reasoning=[
            ["The i-th reflected Gray code is simply i ^ (i >> 1).",
             "There's a closed form: gray(i) = i XOR (i shifted right by one)."],
            ["This works because incrementing i flips a block of low bits, and XOR with the shifted value leaves "
             "exactly one of them changed.",
             "Consecutive values of i ^ (i >> 1) differ in a single bit, which is the defining property."],
            ["The reflect-and-prefix construction would also work but builds intermediate lists.",
             None],
            ["For $arg = 0 the sequence is just [0].",
             "Edge case: zero bits gives the single code 0."],
        ],
        intention=[
            "Return [i ^ (i >> 1) for i in range(2 ** $arg)].",
            "Use the closed-form Gray code formula over all 2**$arg indices.",
        ],
        code=r'''
def $fn($arg):
    """Return the $arg-bit binary-reflected Gray code sequence."""
    if $arg < 0:
        raise ValueError("$arg must be non-negative")
    return [i ^ (i >> 1) for i in range(1 << $arg)]
''',
        test='''
assert $fn(2) == [0, 1, 3, 2]
assert $fn(0) == [0]
seq = $fn(5)
assert sorted(seq) == list(range(32))
assert all(bin(a ^ b).count("1") == 1 for a, b in zip(seq, seq[1:]))
''',
        alternatives=[
            "The reflective construction starts from [0], and at each step appends the reversed list with the new high "
            "bit set. It shows why the sequence is called reflected and generalises nicely to explaining the property "
            "by induction. It is still O(2^n) but creates a new list for every bit. A backtracking search that flips "
            "one bit at a time and avoids visited values also works but is far more code. The closed form is the most "
            "direct.",
        ])


@family
def gcd_lcm(rng, long):
    v = dict(fn=rng.choice(["lcm_of_list", "list_lcm", "least_common_multiple"]),
             arg=rng.choice(["numbers", "values", "nums"]))
    return build(rng, v, long=long, cx="O(n log M) time for values up to M",
        instruction=[
            "Write `$fn($arg)` that returns the least common multiple of a non-empty list of positive integers. "
            "Implement gcd yourself with Euclid's algorithm.",
            "Implement `$fn($arg)`: compute the LCM of all the positive integers in the list, using a hand-written "
            "Euclidean gcd helper. Raise ValueError for an empty list.",
        ],
        reasoning=[
            ["lcm(a, b) = a // gcd(a, b) * b, and LCM is associative, so I can fold over the list.",
             "The LCM of a list can be computed pairwise, since lcm(a, b, c) = lcm(lcm(a, b), c)."],
            ["Euclid's algorithm repeatedly replaces (a, b) with (b, a % b) until b is zero.",
             "For gcd I'll use the iterative Euclidean algorithm."],
            ["Dividing before multiplying keeps intermediate values small, though Python ints can't overflow anyway.",
             "I'll compute a // gcd * b rather than a * b // gcd to avoid needlessly large intermediates."],
            ["An empty list has no meaningful LCM here, so it raises ValueError.", None],
        ],
        intention=[
            "Write an iterative Euclid gcd and fold the list with lcm(a, b) = a // gcd(a, b) * b.",
            "Reduce the list pairwise with an LCM built on Euclid's algorithm.",
        ],
        code=r'''
def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def $fn($arg):
    """Return the least common multiple of a non-empty list of positive ints."""
    if not $arg:
        raise ValueError("need at least one number")
    result = $arg[0]
    for value in $arg[1:]:
        result = result // _gcd(result, value) * value
    return result
''',
        test='''
assert $fn([4, 6]) == 12
assert $fn([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == 2520
assert $fn([7]) == 7
assert _gcd(48, 18) == 6
''',
        alternatives=[
            "One could factorise every number and take the maximum exponent of each prime, which gives the LCM "
            "directly and is conceptually nice, but factorisation is far slower than Euclid for large values. The "
            "standard library offers math.gcd and, since Python 3.9, math.lcm accepting any number of arguments; in "
            "production code I would simply call math.lcm(*numbers). The statement asks for a hand-written gcd, so a "
            "small helper it is.",
        ])


@family
def sieve(rng, long):
    v = dict(fn=rng.choice(["primes_up_to", "sieve", "list_primes"]),
             arg=rng.choice(["limit", "n", "upper"]))
    return build(rng, v, long=long, cx="O(n log log n) time and O(n) space",
        instruction=[
            "Write `$fn($arg)` that returns a list of all primes less than or equal to `$arg` using the Sieve of "
            "Eratosthenes.",
            "Implement `$fn($arg)`: generate every prime number up to and including `$arg` efficiently. Return an "
            "empty list when `$arg` < 2.",
        ],
        reasoning=[
            ["Trial division of every number would be slow; the sieve marks composites in bulk.",
             "The Sieve of Eratosthenes is the standard way to list all primes up to a bound."],
            ["I'll keep a bytearray of flags, initially all true, and clear 0 and 1.",
             "A bytearray is compact and fast for the flags."],
            ["For each prime p with p * p <= $arg, mark multiples starting at p * p, since smaller multiples were "
             "already crossed out.",
             "Crossing out can start at p squared; anything smaller has a smaller prime factor."],
            ["Slice assignment marks all multiples at once, which is much faster than a Python loop.",
             "Using slice assignment for the marking keeps the inner loop in C."],
            ["For $arg < 2 the answer is empty.", None],
        ],
        intention=[
            "Sieve with a bytearray, clearing multiples from p*p in steps of p, then collect the indices still set.",
            "Classic Eratosthenes sieve up to $arg with slice assignment for the marking.",
        ],
        code=r'''
def $fn($arg):
    """Return all primes <= $arg (Sieve of Eratosthenes)."""
    if $arg < 2:
        return []
    is_prime = bytearray([1]) * ($arg + 1)
    is_prime[0] = is_prime[1] = 0
    p = 2
    while p * p <= $arg:
        if is_prime[p]:
            is_prime[p * p :: p] = bytes(len(range(p * p, $arg + 1, p)))
        p += 1
    return [i for i, flag in enumerate(is_prime) if flag]
''',
        test='''
assert $fn(30) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
assert $fn(1) == []
assert $fn(2) == [2]
assert len($fn(10000)) == 1229
''',
        alternatives=[
            "Trial division up to the square root for each candidate is simple and fine for small limits, but its "
            "total cost is around O(n sqrt(n) / log n). A segmented sieve processes the range in blocks that fit in "
            "cache and is the right tool when the limit is in the billions or when only primes in a window [lo, hi] "
            "are needed. Sieving only odd numbers halves memory and time at the cost of index arithmetic; for clarity "
            "I'll sieve all numbers.",
        ])


@family
def prime_factors(rng, long):
    v = dict(fn=rng.choice(["prime_factors", "factorize", "factorise"]),
             arg=rng.choice(["n", "number", "value"]))
    return build(rng, v, long=long, cx="O(sqrt(n)) time in the worst case",
        instruction=[
            "Write `$fn($arg)` that returns the prime factorisation of an integer `$arg` >= 2 as a sorted list of "
            "primes with repetition, e.g. 12 -> [2, 2, 3].",
            "Implement `$fn($arg)`: return the prime factors of `$arg` in non-decreasing order, each repeated "
            "according to its multiplicity. Raise ValueError if `$arg` < 2.",
        ],
        reasoning=[
            ["Trial division is enough: divide out each candidate d while it divides $arg.",
             "I'll divide by 2 and then by 3, 5, 7, ... repeatedly; composite candidates like 9 never divide because "
             "their prime factors were removed already."],
            ["I only need to try d while d * d <= $arg; whatever remains above 1 afterwards is itself prime.",
             "Stopping at the square root is valid because a composite remainder must have a factor no larger than its "
             "square root."],
            ["Because candidates increase, the factors are appended in sorted order automatically.",
             "Each time d divides, I append it again, so multiplicities are preserved."],
            ["After 2, only odd candidates need checking, which halves the work.", None],
            ["Inputs below 2 have no factorisation, so ValueError.", None],
        ],
        intention=[
            "Trial-divide up to the square root, collecting repeated factors, and append any remaining prime.",
            "Strip out small factors in increasing order, then treat the leftover > 1 as a prime factor.",
        ],
        code=r'''
def $fn($arg):
    """Return the prime factors of $arg in ascending order, with repetition."""
    if $arg < 2:
        raise ValueError("$arg must be at least 2")
    factors = []
    d = 2
    while d * d <= $arg:
        while $arg % d == 0:
            factors.append(d)
            $arg //= d
        d += 1 if d == 2 else 2
    if $arg > 1:
        factors.append($arg)
    return factors
''',
        test='''
assert $fn(12) == [2, 2, 3]
assert $fn(97) == [97]
assert $fn(360) == [2, 2, 2, 3, 3, 5]
assert $fn(2 ** 10 * 101) == [2] * 10 + [101]
''',
        alternatives=[
            "For large semiprimes trial division is hopeless, and Pollard's rho combined with a Miller-Rabin primality "
            "test is the usual upgrade, finding factors in roughly O(n^(1/4)) expected time. If many numbers below a "
            "fixed bound need factorising, a smallest-prime-factor sieve answers each query in O(log n). For a single "
            "moderate integer, trial division skipping even numbers after 2 is simple and fast enough.",
        ])


@family
def int_to_roman(rng, long):
    v = dict(fn=rng.choice(["int_to_roman", "to_roman", "roman_numeral"]),
             arg=rng.choice(["num", "n", "number"]))
    return build(rng, v, long=long, cx="O(1) time since the input is bounded",
        instruction=[
            "Write `$fn($arg)` that converts an integer from 1 to 3999 into a Roman numeral string using subtractive "
            "notation (IV, IX, XL, ...). Raise ValueError outside that range.",
            "Implement `$fn($arg)`: return the standard Roman numeral for an integer in [1, 3999].",
        ],
        reasoning=[
            ["Roman numerals are greedy once the subtractive pairs are treated as their own symbols.",
             "If I include 900 (CM), 400 (CD), 90 (XC), 40 (XL), 9 (IX) and 4 (IV) as symbols, a greedy algorithm "
             "works."],
            ["I'll list value-symbol pairs in descending order and repeatedly subtract the largest value that fits.",
             "Walking the table from largest to smallest, I append each symbol as many times as it fits."],
            ["divmod gives the repeat count and the remainder in one step.",
             "Using divmod per symbol avoids an inner while loop."],
            ["Values outside 1..3999 can't be written in standard notation, so they raise ValueError.",
             "Zero and negative numbers have no Roman representation."],
        ],
        intention=[
            "Greedily emit symbols from a descending value table that includes the subtractive pairs.",
            "Use divmod against a descending (value, symbol) table to build the numeral.",
        ],
        code=r'''
_ROMAN_TABLE = [
    (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"),
    (100, "C"), (90, "XC"), (50, "L"), (40, "XL"),
    (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
]


def $fn($arg):
    """Convert an integer in [1, 3999] to a Roman numeral."""
    if not 1 <= $arg <= 3999:
        raise ValueError("$arg must be between 1 and 3999")
    parts = []
    for value, symbol in _ROMAN_TABLE:
        count, $arg = divmod($arg, value)
        parts.append(symbol * count)
    return "".join(parts)
''',
        test='''
assert $fn(1994) == "MCMXCIV"
assert $fn(58) == "LVIII"
assert $fn(4) == "IV"
assert $fn(3999) == "MMMCMXCIX"
''',
        alternatives=[
            "A digit-by-digit approach uses four lookup tables, one each for thousands, hundreds, tens and units, and "
            "concatenates thousands[n // 1000] + hundreds[n % 1000 // 100] and so on. It is branch-free and very fast "
            "but the tables are tedious to write and easy to mistype. The greedy table is shorter and its correctness "
            "follows from the fact that the subtractive pairs make the symbol system canonical.",
        ])


@family
def roman_to_int(rng, long):
    v = dict(fn=rng.choice(["roman_to_int", "from_roman", "parse_roman"]),
             arg=rng.choice(["s", "numeral", "text"]))
    return build(rng, v, long=long, cx="O(n) time",
        instruction=[
            "Write `$fn($arg)` that converts a valid Roman numeral string (such as 'MCMXCIV') to an integer.",
            "Implement `$fn($arg)`: parse a Roman numeral that may use subtractive notation and return its integer "
            "value.",
        ],
        reasoning=[
            ["Each symbol normally adds its value, except when a smaller symbol precedes a larger one, in which case "
             "it subtracts.",
             "The rule is: if a symbol is smaller than the one after it, subtract it; otherwise add it."],
            ["So I can scan left to right and compare each value with the next one.",
             "A single pass comparing neighbours is enough."],
            ["Scanning right to left with a running maximum is an equivalent formulation.", None],
            ["The last symbol is always added, since nothing follows it.",
             "I need to be careful at the final position, which has no successor."],
            ["I'll assume valid input as the statement says; an unknown character would raise KeyError.", None],
        ],
        intention=[
            "Map symbols to values and add each one, subtracting it instead when the next symbol is larger.",
            "Single left-to-right pass with look-ahead to apply subtractive notation.",
        ],
        code=r'''
_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def $fn($arg):
    """Convert a Roman numeral to an integer."""
    total = 0
    for i, ch in enumerate($arg):
        value = _VALUES[ch]
        if i + 1 < len($arg) and value < _VALUES[$arg[i + 1]]:
            total -= value
        else:
            total += value
    return total
''',
        test='''
assert $fn("MCMXCIV") == 1994
assert $fn("III") == 3
assert $fn("IX") == 9
assert $fn("MMMCMXCIX") == 3999
''',
        alternatives=[
            "Another method replaces the six subtractive pairs with placeholder additive strings, for example 'IV' "
            "with 'IIII', and then simply sums symbol values; it works but performs several string passes. A stricter "
            "parser would also validate the numeral, rejecting forms like 'IIII' or 'IC', typically with a regular "
            "expression such as M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3}). Validation isn't requested, so "
            "I'll keep the conversion simple.",
        ])


@family
def parse_config(rng, long):
    v = dict(fn=rng.choice(["parse_config", "parse_settings", "read_kv_lines"]),
             arg=rng.choice(["text", "source", "content"]))
    return build(rng, v, long=long, cx="O(n) time in the length of the text",
        instruction=[
            "Write `$fn($arg)` that parses a multi-line string of `key = value` lines into a dict. Ignore blank lines "
            "and lines starting with '#', strip whitespace around keys and values, and raise ValueError (mentioning "
            "the line number) for lines without '='.",
            "Implement `$fn($arg)`: turn simple config text into a dict. Each non-empty, non-comment line has the form "
            "`key=value`; whitespace around both parts is ignored, later keys override earlier ones, and a malformed "
            "line raises ValueError with its 1-based line number.",
        ],
        reasoning=[
            ["I'll iterate over splitlines() with enumerate starting at 1 so I can report line numbers.",
             "Line numbers in errors are helpful, so I'll enumerate lines from 1."],
            ["Each line is stripped first; empty lines and comment lines are skipped.",
             "After stripping, blank lines and those beginning with '#' are ignored."],
            ["I split on the first '=' only, using partition, so values may themselves contain '='.",
             "str.partition('=') splits on the first equals sign, which allows values like 'a=b'."],
            ["If there's no '=' or the key is empty, the line is malformed and I raise ValueError.",
             "A missing separator or an empty key gives a ValueError naming the line."],
            ["Duplicate keys simply overwrite, which is the usual config semantics.", None],
        ],
        intention=[
            "Loop over numbered lines, skip blanks and comments, partition on the first '=', and raise on malformed "
            "lines.",
            "Parse each meaningful line with str.partition and store stripped key/value pairs in a dict.",
        ],
        code=r'''
def $fn($arg):
    """Parse 'key = value' lines into a dict, skipping blanks and # comments."""
    result = {}
    for lineno, raw in enumerate($arg.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError("line %d: expected 'key = value'" % lineno)
        result[key] = value.strip()
    return result
''',
        test='''
cfg = "# comment\\nname = demo\\n\\nurl = http://x/?a=b\\nname=final\\n"
assert $fn(cfg) == {"name": "final", "url": "http://x/?a=b"}
assert $fn("") == {}
try:
    $fn("ok=1\\nbroken")
except ValueError as exc:
    assert "line 2" in str(exc)
else:
    raise AssertionError
''',
        alternatives=[
            "The standard library's configparser handles a richer INI format with sections, interpolation and type "
            "helpers, but it requires section headers and treats ':' as a separator too, which differs from the "
            "requested format. A regular expression like ^\\s*([^=]+?)\\s*=\\s*(.*)$$ could parse each line, but "
            "partition is clearer and faster. I considered supporting inline comments after values, but that would "
            "break values containing '#', so I'll leave values untouched.",
        ])


@family
def eval_rpn(rng, long):
    v = dict(fn=rng.choice(["eval_rpn", "evaluate_postfix", "rpn_calc"]),
             arg=rng.choice(["tokens", "expression", "items"]))
    return build(rng, v, long=long, cx="O(n) time and O(n) stack space",
        instruction=[
            "Write `$fn($arg)` that evaluates a Reverse Polish Notation expression given as a list of string tokens "
            "with integer operands and the operators + - * /. Division truncates toward zero. Raise ValueError on "
            "malformed input.",
            "Implement `$fn($arg)`: evaluate a postfix expression such as ['2', '1', '+', '3', '*'] and return the "
            "integer result. Integer division truncates toward zero.",
        ],
        reasoning=[
            ["RPN evaluates naturally with a stack: push numbers, and for an operator pop two operands and push the "
             "result.",
             "A stack is all I need; operators consume the top two values."],
            ["Order matters: the first pop is the right operand and the second is the left one.",
             "For '-' and '/' I must pop b first, then a, and compute a op b."],
            ["Python's // floors toward negative infinity, so -7 // 2 is -4 rather than -3; I'll write a small "
             "sign-aware helper instead of going through floats.",
             "Truncation toward zero differs from Python's floor division for negative results, so I'll compute abs(a) "
             "// abs(b) and fix the sign."],
            ["Too few operands for an operator, or more than one value left at the end, means malformed input.",
             "At the end exactly one value must remain; otherwise the expression was malformed."],
            ["Negative number tokens like '-3' must be treated as operands, not operators.", None],
        ],
        intention=[
            "Process tokens with a stack, applying operators to the top two values with truncating division, and "
            "validate the final stack.",
            "Push integers, pop two for each operator in the correct order, and return the single remaining value.",
        ],
        code=r'''
def _truncating_div(a, b):
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b >= 0) else -quotient


def $fn($arg):
    """Evaluate an RPN expression of integer tokens and + - * /."""
    ops = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "/": _truncating_div,
    }
    stack = []
    for token in $arg:
        if token in ops:
            if len(stack) < 2:
                raise ValueError("not enough operands for %r" % token)
            b = stack.pop()
            a = stack.pop()
            stack.append(ops[token](a, b))
        else:
            stack.append(int(token))
    if len(stack) != 1:
        raise ValueError("malformed expression")
    return stack[0]
''',
        test='''
assert $fn(["2", "1", "+", "3", "*"]) == 9
assert $fn(["4", "13", "5", "/", "+"]) == 6
assert $fn(["-7", "2", "/"]) == -3
assert $fn(["10", "6", "9", "3", "+", "-11", "*", "/", "*", "17", "+", "5", "+"]) == 22
for bad in (["+"], ["1", "2"]):
    try:
        $fn(bad)
    except ValueError:
        pass
    else:
        raise AssertionError(bad)
''',
        alternatives=[
            "Using int(a / b) for truncating division is the common shortcut, but it goes through floating point and "
            "silently loses precision once operands exceed 2**53, so the integer-only helper is safer. The operator "
            "module provides add, sub and mul, which could replace the lambdas; I kept lambdas to keep the mapping "
            "visibly self-contained. Recursion from the end of the token list is another way to evaluate postfix, but "
            "the stack is more natural and has no depth limit.",
        ])


@family
def calculator(rng, long):
    v = dict(fn=rng.choice(["evaluate", "calc", "eval_expression"]),
             arg=rng.choice(["expr", "source", "formula"]))
    return build(rng, v, long=long, cx="O(n) time",
        instruction=[
            "Write `$fn($arg)` that evaluates an arithmetic expression string containing non-negative integers, + - * "
            "/, parentheses and spaces, respecting the usual precedence. Use true division and return a number. Do not "
            "use eval().",
            "Implement a small recursive-descent evaluator `$fn($arg)` for expressions with integers, the four basic "
            "operators, unary minus and parentheses. Raise ValueError for syntax errors.",
        ],
        reasoning=[
            ["eval() is unsafe and explicitly disallowed, so I'll write a tiny parser.",
             "I'll avoid eval and implement recursive descent, which mirrors the grammar directly."],
            ["Grammar: expr := term (('+'|'-') term)*, term := factor (('*'|'/') factor)*, factor := number | '-' "
             "factor | '(' expr ')'.",
             "Precedence falls out of the grammar layering: expressions are sums of terms, terms are products of "
             "factors."],
            ["First I tokenise with a regex into numbers and single-character operators, rejecting anything else.",
             "Tokenising first keeps the parser simple; any unexpected character is a syntax error."],
            ["Loops within expr and term give left associativity, so 8 - 3 - 2 is 3, not 7.",
             "Using loops rather than right recursion keeps subtraction and division left-associative."],
            ["After parsing, leftover tokens mean the input was malformed, e.g. '1 2'.",
             "I must check that the parser consumed all tokens."],
        ],
        intention=[
            "Tokenise with a regex, then parse expr/term/factor with recursive descent, evaluating as I go.",
            "Recursive-descent evaluation following the precedence grammar, with explicit error checks.",
        ],
        code=r'''
import re

_TOKEN = re.compile(r"\s*(?:(\d+)|(.))")


def $fn($arg):
    """Evaluate an arithmetic expression with + - * / and parentheses."""
    tokens = []
    for number, op in _TOKEN.findall($arg):
        if number:
            tokens.append(int(number))
        elif op.strip():
            if op not in "+-*/()":
                raise ValueError("unexpected character %r" % op)
            tokens.append(op)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError("unexpected end of expression")
        pos += 1
        return tokens[pos - 1]

    def parse_expr():
        value = parse_term()
        while peek() in ("+", "-"):
            value = value + parse_term() if take() == "+" else value - parse_term()
        return value

    def parse_term():
        value = parse_factor()
        while peek() in ("*", "/"):
            value = value * parse_factor() if take() == "*" else value / parse_factor()
        return value

    def parse_factor():
        token = take()
        if token == "-":
            return -parse_factor()
        if token == "(":
            value = parse_expr()
            if take() != ")":
                raise ValueError("expected ')'")
            return value
        if isinstance(token, int):
            return token
        raise ValueError("unexpected token %r" % token)

    result = parse_expr()
    if pos != len(tokens):
        raise ValueError("unexpected trailing input")
    return result
''',
        test='''
assert $fn("1 + 2 * 3") == 7
assert $fn("(1 + 2) * 3") == 9
assert $fn("8 - 3 - 2") == 3
assert $fn("-(4 + 4) / 2") == -4
assert $fn("7 / 2") == 3.5
for bad in ("1 +", "(1", "1 2", "2 ^ 3"):
    try:
        $fn(bad)
    except ValueError:
        pass
    else:
        raise AssertionError(bad)
''',
        alternatives=[
            "Dijkstra's shunting-yard algorithm converts infix to postfix with an operator stack and then evaluates "
            "the postfix form; it is iterative and handles precedence tables well, but unary minus needs special "
            "treatment that is easy to get wrong. Parsing with the ast module and walking only whitelisted node types "
            "is a robust alternative that reuses Python's own grammar, but it accepts Python-specific syntax like ** "
            "or // unless I reject those nodes. A Pratt parser generalises nicely to many precedence levels, which is "
            "more than this task needs.",
        ])


@family
def batched(rng, long):
    v = dict(fn=rng.choice(["chunked", "batched", "in_batches"]),
             arg=rng.choice(["iterable", "items", "stream"]),
             size=rng.choice(["size", "n", "batch_size"]))
    return build(rng, v, long=long, cx="O(n) time and O($size) memory per batch",
        instruction=[
            "Write a generator `$fn($arg, $size)` that yields successive lists of up to `$size` items from any "
            "iterable; the last batch may be shorter. Raise ValueError if `$size` < 1.",
            "Implement `$fn($arg, $size)` as a lazy generator splitting an arbitrary iterable (possibly infinite) into "
            "lists of length `$size`, with a shorter final list if needed.",
        ],
        reasoning=[
            ["The input may be any iterable, even an infinite generator, so I can't use len() or slicing.",
             "Since iterables may be one-shot or infinite, I must consume them lazily with an iterator."],
            ["itertools.islice(it, $size) takes the next batch from a shared iterator.",
             "Repeatedly calling islice on the same iterator yields consecutive chunks."],
            ["When islice returns an empty list, the input is exhausted and the generator stops.",
             "An empty batch signals the end, so I return then."],
            ["A non-positive $size would loop forever or make no sense, so I validate it eagerly.",
             "Validation of $size should happen before the first yield; otherwise the error surfaces late."],
            ["Python 3.12 adds itertools.batched, but it yields tuples and isn't available on 3.11.", None],
        ],
        intention=[
            "Wrap the input in an iterator and yield list(islice(it, $size)) until it comes back empty.",
            "Use islice on a single iterator to pull fixed-size chunks lazily.",
        ],
        code=r'''
from itertools import islice


def $fn($arg, $size):
    """Yield lists of up to $size consecutive items from $arg."""
    if $size < 1:
        raise ValueError("$size must be at least 1")
    return _batches(iter($arg), $size)


def _batches(iterator, size):
    while True:
        batch = list(islice(iterator, size))
        if not batch:
            return
        yield batch
''',
        test='''
assert list($fn(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
assert list($fn([], 2)) == []
from itertools import count
gen = $fn(count(), 2)
assert next(gen) == [0, 1] and next(gen) == [2, 3]
try:
    $fn([1], 0)
except ValueError:
    pass
else:
    raise AssertionError
''',
        alternatives=[
            "The zip(*[iter(xs)] * n) idiom groups items elegantly but drops the incomplete final batch, and "
            "zip_longest pads it with a fill value instead; neither matches the requirement. Slicing a list in steps "
            "of n is simple but requires a sequence and materialises everything. I split the function into a "
            "validating wrapper and an inner generator so that the ValueError is raised at call time rather than on "
            "the first next(), which is a subtle but useful detail of generator functions.",
        ])


@family
def sliding_window_max(rng, long):
    v = dict(fn=rng.choice(["sliding_max", "window_maximums", "max_in_windows"]),
             arg=rng.choice(["nums", "values", "series"]),
             k=rng.choice(["k", "width", "window"]))
    return build(rng, v, long=long, cx="O(n) time and O($k) extra space",
        instruction=[
            "Write `$fn($arg, $k)` that returns a list with the maximum of every contiguous window of size `$k` in "
            "`$arg`, in O(n) time.",
            "Implement `$fn($arg, $k)`: slide a window of width `$k` across the list and report the maximum at each "
            "position. Raise ValueError if `$k` is not positive.",
        ],
        reasoning=[
            ["Recomputing max for each window is O(n * $k), which is too slow for large windows.",
             "The naive approach costs O(n * $k); I want linear time."],
            ["A monotonic deque of indices, with values decreasing from front to back, keeps the current maximum at "
             "the front.",
             "I'll keep a deque of indices whose values are in decreasing order; the front is always the window "
             "maximum."],
            ["When a new value arrives, I pop smaller values from the back because they can never be a maximum again.",
             "Any element smaller than the incoming one is dominated for the rest of its life, so it can be "
             "discarded."],
            ["I also pop the front when its index falls out of the window.",
             "Indices that slide out of range are removed from the front."],
            ["Each index is pushed and popped at most once, hence O(n) overall.", None],
            ["If $k exceeds the length there are no full windows, so the result is empty.", None],
        ],
        intention=[
            "Maintain a decreasing deque of indices, evict expired ones from the front, and record the front value "
            "once the first window is full.",
            "Monotonic-deque sliding window maximum in linear time.",
        ],
        code=r'''
from collections import deque


def $fn($arg, $k):
    """Return the maximum of each length-$k window of $arg."""
    if $k <= 0:
        raise ValueError("$k must be positive")
    candidates = deque()  # indices whose values are decreasing
    result = []
    for i, value in enumerate($arg):
        while candidates and $arg[candidates[-1]] <= value:
            candidates.pop()
        candidates.append(i)
        if candidates[0] <= i - $k:
            candidates.popleft()
        if i >= $k - 1:
            result.append($arg[candidates[0]])
    return result
''',
        test='''
assert $fn([1, 3, -1, -3, 5, 3, 6, 7], 3) == [3, 3, 5, 5, 6, 7]
assert $fn([4, 2], 1) == [4, 2]
assert $fn([1, 2], 5) == []
assert $fn([5, 5, 5], 2) == [5, 5]
''',
        alternatives=[
            "A heap of (-value, index) pairs also works: push each element and lazily pop entries whose index is out "
            "of the window before reading the top. That is O(n log n) and simpler to reason about for some people, but "
            "the deque is both faster and uses less memory. A block-based approach precomputes prefix maxima and "
            "suffix maxima within blocks of size k, then combines them for each window in O(1); it is linear too and "
            "vectorises well, but needs two extra arrays.",
        ])


@family
def moving_average(rng, long):
    v = dict(fn=rng.choice(["moving_average", "running_mean", "rolling_average"]),
             arg=rng.choice(["values", "stream", "samples"]),
             w=rng.choice(["window", "period", "span"]))
    return build(rng, v, long=long, cx="O(1) work per element",
        instruction=[
            "Write a generator `$fn($arg, $w)` that yields the average of the last `$w` values seen so far for each "
            "element of an iterable (averaging fewer values until the window fills up).",
            "Implement `$fn($arg, $w)` as a lazy generator over any iterable: for each incoming number, yield the mean "
            "of the most recent `$w` numbers, or of all numbers so far if fewer than `$w` have arrived.",
        ],
        reasoning=[
            ["Since the input may be a stream, a generator that keeps only the last $w values is ideal.",
             "I want constant memory per window, so I'll hold just the last $w values."],
            ["A deque with maxlen=$w drops the oldest value automatically.",
             "collections.deque(maxlen=$w) handles eviction for me."],
            ["Maintaining a running sum avoids re-summing the window each time: add the new value and subtract the "
             "evicted one.",
             "To get O(1) per step I'll keep a running total, subtracting the value about to be evicted before "
             "appending."],
            ["I must read the evicted value before appending, because append silently discards it.",
             "The order of operations matters: capture the oldest element first when the deque is full."],
            ["A non-positive window is invalid.", None],
        ],
        intention=[
            "Keep a bounded deque and a running sum, yielding total / len(window) after each update.",
            "Stream through the values, adjusting a running total as elements enter and leave a maxlen deque.",
        ],
        code=r'''
from collections import deque


def $fn($arg, $w):
    """Yield the mean of the last $w values for each incoming value."""
    if $w <= 0:
        raise ValueError("$w must be positive")
    recent = deque(maxlen=$w)
    total = 0.0
    for value in $arg:
        if len(recent) == $w:
            total -= recent[0]
        recent.append(value)
        total += value
        yield total / len(recent)
''',
        test='''
assert list($fn([2, 4, 6, 8], 2)) == [2.0, 3.0, 5.0, 7.0]
assert list($fn([], 3)) == []
assert list($fn([1, 2, 3], 5)) == [1.0, 1.5, 2.0]
''',
        alternatives=[
            "Recomputing sum(recent) / len(recent) on every step is simpler and numerically more robust, because a "
            "long-running total accumulates floating-point error; for small windows the cost difference is negligible. "
            "For very long streams a compromise is to recompute the sum exactly every few thousand steps. math.fsum "
            "could also reduce rounding error. For this task the running-sum version with small inputs is accurate and "
            "efficient.",
        ])


@family
def permutations(rng, long):
    v = dict(fn=rng.choice(["permutations", "all_orderings", "permute"]),
             arg=rng.choice(["items", "elements", "values"]))
    return build(rng, v, long=long, cx="O(n * n!) time, proportional to the output",
        instruction=[
            "Write `$fn($arg)` that returns all permutations of a list of distinct elements as a list of lists, in "
            "lexicographic order of positions (as itertools.permutations would produce), without using itertools.",
            "Implement `$fn($arg)` with backtracking: generate every ordering of the given distinct items.",
        ],
        reasoning=[
            ["Backtracking builds each permutation position by position, choosing any unused element.",
             "The natural recursion: pick an unused element, recurse, then undo the choice."],
            ["I'll track used positions with a boolean list so I don't rely on element equality.",
             "A used-flags list keyed by index avoids issues with unhashable items."],
            ["Iterating candidates in index order produces the same order as itertools.permutations.",
             "Choosing candidates by increasing index gives a deterministic order."],
            ["When the current path has length n, I append a copy of it to the results.",
             "I must copy the path when recording it, since the list keeps being mutated."],
            ["The empty list has exactly one permutation, the empty one.", None],
        ],
        intention=[
            "Backtrack over positions with a used-flags array, recording a copy of the path whenever it is complete.",
            "Recursive backtracking that extends a partial ordering with each unused element in turn.",
        ],
        code=r'''
def $fn($arg):
    """Return all permutations of $arg as lists."""
    $arg = list($arg)
    result, path = [], []
    used = [False] * len($arg)

    def backtrack():
        if len(path) == len($arg):
            result.append(path[:])
            return
        for i, item in enumerate($arg):
            if not used[i]:
                used[i] = True
                path.append(item)
                backtrack()
                path.pop()
                used[i] = False

    backtrack()
    return result
''',
        test='''
assert $fn([1, 2, 3]) == [[1, 2, 3], [1, 3, 2], [2, 1, 3], [2, 3, 1], [3, 1, 2], [3, 2, 1]]
assert $fn([]) == [[]]
import itertools
assert $fn("abcd") == [list(p) for p in itertools.permutations("abcd")]
''',
        alternatives=[
            "Heap's algorithm generates each permutation from the previous one by a single swap and is the most "
            "efficient in terms of element moves, but its order is not lexicographic. The next-permutation algorithm "
            "(find the rightmost ascent, swap with the smallest larger element to its right, reverse the suffix) "
            "produces lexicographic order iteratively and also handles duplicates gracefully. The backtracking version "
            "is the easiest to adapt to constraints, for example pruning partial permutations.",
        ])


@family
def subsets(rng, long):
    v = dict(fn=rng.choice(["power_set", "all_subsets", "subsets"]),
             arg=rng.choice(["items", "elements", "values"]))
    return build(rng, v, long=long, cx="O(n * 2^n) time",
        instruction=[
            "Write `$fn($arg)` that returns all subsets of a list of distinct items, each subset preserving the "
            "original order, sorted by size and then by position.",
            "Implement `$fn($arg)`: produce the power set of the input list as a list of lists, ordered first by "
            "subset length and then as itertools.combinations would order them.",
        ],
        reasoning=[
            ["There are 2^n subsets; a list of n items with n around 20 is the practical limit.",
             "The output is exponential in size, so the algorithm can't do better than O(2^n)."],
            ["Ordering by size then position is exactly what iterating combinations of each size gives.",
             "The required order is grouped by length, which suggests generating combinations for r = 0..n."],
            ["I'll implement combinations with a small recursive helper that picks indices in increasing order.",
             "For each size r, a recursive helper chooses increasing indices, which preserves original order inside "
             "each subset."],
            ["The empty subset comes first.",
             "Size 0 contributes exactly one subset, the empty list."],
        ],
        intention=[
            "For each size r from 0 to n, recursively choose r increasing indices and collect the resulting subsets.",
            "Generate combinations of every size in increasing size order via index-increasing recursion.",
        ],
        code=r'''
def $fn($arg):
    """Return all subsets of $arg ordered by size, then by position."""
    $arg = list($arg)
    result = []

    def choose(start, size, path):
        if len(path) == size:
            result.append(path[:])
            return
        for i in range(start, len($arg)):
            path.append($arg[i])
            choose(i + 1, size, path)
            path.pop()

    for size in range(len($arg) + 1):
        choose(0, size, [])
    return result
''',
        test='''
assert $fn([1, 2, 3]) == [[], [1], [2], [3], [1, 2], [1, 3], [2, 3], [1, 2, 3]]
assert $fn([]) == [[]]
assert len($fn(range(10))) == 1024
''',
        alternatives=[
            "Bitmask enumeration, where each integer from 0 to 2^n - 1 selects the elements whose bits are set, is "
            "compact and non-recursive, but its natural order is by mask value, not by size, so I would need a sort "
            "with key len afterwards. The iterative doubling trick starts from [[]] and, for each element, appends it "
            "to copies of all existing subsets; it is elegant but again produces a different order. Generating "
            "per-size combinations hits the required order directly.",
        ])


@family
def n_queens(rng, long):
    v = dict(fn=rng.choice(["count_n_queens", "n_queens", "queen_placements"]),
             arg=rng.choice(["n", "size", "board_size"]))
    return build(rng, v, long=long, cx="roughly O(n!) time in the worst case, heavily pruned",
        instruction=[
            "Write `$fn($arg)` that returns the number of ways to place `$arg` queens on an `$arg` x `$arg` chessboard "
            "so that no two attack each other.",
            "Implement `$fn($arg)`: count all solutions to the N-Queens puzzle for a board of size `$arg` using "
            "backtracking.",
        ],
        reasoning=[
            ["Each row holds exactly one queen, so I can place queens row by row.",
             "Placing one queen per row reduces the search to choosing a column for each row."],
            ["A column is safe if it's unused and both diagonals through the square are unused.",
             "Conflicts happen on columns and on the two diagonal directions."],
            ["Diagonals can be identified by row - col and row + col, so three sets give O(1) safety checks.",
             "Cells on the same anti-diagonal share row + col, and on the same main diagonal share row - col."],
            ["Backtracking adds a queen, recurses to the next row, then removes it.",
             "After exploring a placement, I undo it so the sets reflect only the current partial board."],
            ["Reaching row $arg means a complete solution, counted once.", None],
            ["For $arg = 0 there is one empty arrangement, which the recursion returns naturally.", None],
        ],
        intention=[
            "Backtrack row by row, tracking used columns and both diagonal families in sets, and count complete "
            "placements.",
            "Row-wise backtracking with column, row - col and row + col conflict sets.",
        ],
        code=r'''
def $fn($arg):
    """Return the number of solutions to the $arg-queens puzzle."""
    cols, diag, anti = set(), set(), set()

    def place(row):
        if row == $arg:
            return 1
        count = 0
        for col in range($arg):
            if col in cols or row - col in diag or row + col in anti:
                continue
            cols.add(col); diag.add(row - col); anti.add(row + col)
            count += place(row + 1)
            cols.remove(col); diag.remove(row - col); anti.remove(row + col)
        return count

    return place(0)
''',
        test='''
assert [$fn(i) for i in range(1, 9)] == [1, 0, 0, 2, 10, 4, 40, 92]
assert $fn(0) == 1
''',
        alternatives=[
            "A bitmask version represents columns and diagonals as integers, shifting the diagonal masks by one each "
            "row; it is several times faster and is the standard trick for counting solutions up to n around 15. "
            "Exploiting the board's mirror symmetry halves the work by only placing the first queen in the left half "
            "and doubling, with care for the middle column when n is odd. The set-based version is clearer and fast "
            "enough for small boards.",
        ])


@family
def merge_k_sorted(rng, long):
    v = dict(fn=rng.choice(["merge_sorted_lists", "k_way_merge", "merge_all_sorted"]),
             arg=rng.choice(["lists", "sequences", "runs"]))
    return build(rng, v, long=long, cx="O(N log k) time for N total elements in k lists",
        instruction=[
            "Write `$fn($arg)` that merges k individually sorted lists into one sorted list in O(N log k) time, "
            "without simply concatenating and sorting.",
            "Implement `$fn($arg)`: given a list of ascending lists, return a single ascending list containing all "
            "their elements, using a heap.",
        ],
        reasoning=[
            ["Concatenating and sorting is O(N log N) and ignores the existing order.",
             "The lists are already sorted, so I should exploit that."],
            ["A min-heap holding the current head of each list lets me pop the global minimum in O(log k).",
             "I'll keep one entry per list in a heap: (value, list index, element index)."],
            ["Including the list index in the tuple breaks ties and avoids comparing anything unorderable.",
             "The list index as a tie-breaker ensures the heap never compares beyond the value and two ints."],
            ["After popping, I push the next element from the same list if there is one.",
             "Each pop is followed by pushing that list's next element."],
            ["Empty input lists are skipped when seeding the heap.", None],
        ],
        intention=[
            "Seed a heap with each list's first element, then repeatedly pop the minimum and push its successor.",
            "Heap-based k-way merge tracking (value, list index, position).",
        ],
        code=r'''
import heapq


def $fn($arg):
    """Merge several ascending lists into one ascending list."""
    heap = [(seq[0], i, 0) for i, seq in enumerate($arg) if seq]
    heapq.heapify(heap)
    merged = []
    while heap:
        value, i, j = heapq.heappop(heap)
        merged.append(value)
        if j + 1 < len($arg[i]):
            heapq.heappush(heap, ($arg[i][j + 1], i, j + 1))
    return merged
''',
        test='''
assert $fn([[1, 4, 5], [1, 3, 4], [2, 6]]) == [1, 1, 2, 3, 4, 4, 5, 6]
assert $fn([]) == []
assert $fn([[], [1], []]) == [1]
''',
        alternatives=[
            "Divide and conquer, merging pairs of lists in rounds like the merge step of merge sort, also achieves O(N "
            "log k) without a heap, and it is what many linked-list solutions do. heapq.merge in the standard library "
            "is a lazy, production-ready version of exactly this heap algorithm and would be my choice in real code. "
            "Merging lists one by one into an accumulator is O(N k) in the worst case and should be avoided when k is "
            "large.",
        ])


@family
def quickselect(rng, long):
    v = dict(fn=rng.choice(["kth_smallest", "quickselect", "select_kth"]),
             arg=rng.choice(["nums", "values", "data"]),
             k=rng.choice(["k", "rank", "position"]))
    return build(rng, v, long=long, cx="O(n) expected time",
        instruction=[
            "Write `$fn($arg, $k)` that returns the `$k`-th smallest element (1-based) of an unsorted list in expected "
            "linear time, without modifying the input. Raise ValueError if `$k` is out of range.",
            "Implement quickselect as `$fn($arg, $k)`: find the element that would be at index `$k` - 1 after sorting, "
            "without sorting the whole list.",
        ],
        reasoning=[
            ["Sorting gives O(n log n); quickselect gets expected O(n) by recursing into only one side.",
             "Quickselect partitions around a pivot and continues only in the part containing the answer."],
            ["A random pivot avoids the quadratic worst case on already sorted input.",
             "I'll pick pivots at random so adversarial orderings don't hurt."],
            ["Three-way partitioning into less, equal and greater handles duplicates cleanly.",
             "Splitting into <, == and > buckets makes duplicates harmless."],
            ["If $k falls into the equal bucket, the pivot is the answer; otherwise I continue in one side with an "
             "adjusted $k.",
             "Depending on the bucket sizes, I either return the pivot or narrow the search, shifting $k when I go "
             "right."],
            ["Working on new lists keeps the input unmodified, at the cost of O(n) extra memory.", None],
        ],
        intention=[
            "Iteratively partition around a random pivot into less/equal/greater lists and descend into the part "
            "holding rank $k.",
            "Randomised three-way quickselect that narrows the candidate list until the pivot bucket contains the "
            "$k-th element.",
        ],
        code=r'''
import random


def $fn($arg, $k):
    """Return the $k-th smallest element (1-based) of $arg."""
    if not 1 <= $k <= len($arg):
        raise ValueError("$k out of range")
    candidates = list($arg)
    while True:
        pivot = random.choice(candidates)
        lower = [x for x in candidates if x < pivot]
        equal_count = sum(1 for x in candidates if x == pivot)
        if $k <= len(lower):
            candidates = lower
        elif $k <= len(lower) + equal_count:
            return pivot
        else:
            $k -= len(lower) + equal_count
            candidates = [x for x in candidates if x > pivot]
''',
        test='''
data = [7, 10, 4, 3, 20, 15, 4]
assert [$fn(data, i) for i in range(1, 8)] == sorted(data)
assert data == [7, 10, 4, 3, 20, 15, 4]
assert $fn([5], 1) == 5
try:
    $fn([1, 2], 3)
except ValueError:
    pass
else:
    raise AssertionError
''',
        alternatives=[
            "heapq.nsmallest(k, nums)[-1] is a one-liner costing O(n log k), great for small k but worse than "
            "quickselect when k is near n / 2. The median-of-medians pivot rule guarantees worst-case linear time, but "
            "its constant factor is large and it is rarely worth it outside of adversarial settings. An in-place "
            "Lomuto or Hoare partition would avoid allocating new lists, but it would mutate the caller's list unless "
            "I copy it first anyway.",
        ])


@family
def invert_dict(rng, long):
    v = dict(fn=rng.choice(["invert_mapping", "group_keys_by_value", "reverse_index"]),
             arg=rng.choice(["mapping", "table", "d"]))
    return build(rng, v, long=long, cx="O(n log n) time because of sorting each group",
        instruction=[
            "Write `$fn($arg)` that inverts a dict whose values may repeat: return a dict mapping each value to a "
            "sorted list of the keys that had it.",
            "Implement `$fn($arg)`: build a reverse index from a dict, so every distinct value maps to the sorted list "
            "of its keys.",
        ],
        reasoning=[
            ["A plain {v: k} comprehension would lose keys when values repeat, so each value must map to a list.",
             "Values aren't unique, so the inverse has to collect keys into lists."],
            ["defaultdict(list) makes the grouping loop trivial.",
             "I'll accumulate with setdefault or a defaultdict."],
            ["The statement asks for sorted key lists, so I sort each group at the end.",
             "Sorting each list afterwards gives deterministic output regardless of insertion order."],
            ["Values must be hashable to become keys; unhashable values will raise TypeError, which is "
             "reasonable.", None],
            ["I'll return a regular dict rather than the defaultdict to avoid surprising auto-insertion for "
             "callers.", None],
        ],
        intention=[
            "Group keys by value in a defaultdict(list), then return a plain dict with each key list sorted.",
            "Accumulate keys per value and sort the groups before returning.",
        ],
        code=r'''
from collections import defaultdict


def $fn($arg):
    """Map each value of $arg to the sorted list of keys holding it."""
    groups = defaultdict(list)
    for key, value in $arg.items():
        groups[value].append(key)
    return {value: sorted(keys) for value, keys in groups.items()}
''',
        test='''
assert $fn({"a": 1, "b": 2, "c": 1}) == {1: ["a", "c"], 2: ["b"]}
assert $fn({}) == {}
assert $fn({"z": 0, "y": 0}) == {0: ["y", "z"]}
''',
        alternatives=[
            "itertools.groupby over the items sorted by value would produce the same grouping, but it requires values "
            "to be mutually orderable, whereas a dict only needs them hashable. If the caller knows values are unique, "
            "the simple comprehension {v: k for k, v in d.items()} is the right tool and could be offered as a "
            "separate function, perhaps with a check that raises on collisions instead of silently overwriting.",
        ])


@family
def deep_merge(rng, long):
    v = dict(fn=rng.choice(["deep_merge", "merge_configs", "recursive_update"]),
             a=rng.choice(["base", "defaults", "left"]),
             b=rng.choice(["override", "updates", "right"]))
    v["arg"] = v["a"]
    return build(rng, v, long=long, cx="O(total number of keys) time",
        instruction=[
            "Write `$fn($a, $b)` that returns a new dict combining two nested dicts: values from `$b` win, except that "
            "when both sides hold dicts for the same key they are merged recursively. Neither input may be modified.",
            "Implement `$fn($a, $b)`: recursively merge `$b` into a copy of `$a`, descending into nested dicts and "
            "otherwise letting `$b`'s values override.",
        ],
        reasoning=[
            ["dict.update is shallow: a nested dict in $b would replace the whole nested dict in $a.",
             "The built-in update or {**a, **b} only merges the top level, which isn't enough."],
            ["So for each key in $b, if both values are dicts I recurse, otherwise the $b value wins.",
             "The recursion rule is: two dicts merge, anything else is overridden."],
            ["To avoid mutating inputs, I start from a shallow copy of $a and recursion creates new dicts for nested "
             "levels.",
             "I'll build the result as a fresh dict at every level so no input is changed."],
            ["Lists are treated as plain values and replaced, not concatenated.", None],
            ["Recursion depth equals nesting depth, which is small for config-like data.", None],
        ],
        intention=[
            "Copy $a, then for each key of $b either recurse when both values are dicts or overwrite with $b's value.",
            "Recursive merge that builds new dicts level by level and lets the override side win on conflicts.",
        ],
        code=r'''
def $fn($a, $b):
    """Return a new dict: $b deep-merged over $a (inputs untouched)."""
    result = dict($a)
    for key, value in $b.items():
        current = result.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            result[key] = $fn(current, value)
        else:
            result[key] = value
    return result
''',
        test='''
x = {"db": {"host": "localhost", "port": 5432}, "debug": False}
y = {"db": {"port": 6543}, "debug": True, "tags": ["a"]}
assert $fn(x, y) == {"db": {"host": "localhost", "port": 6543}, "debug": True, "tags": ["a"]}
assert x["db"]["port"] == 5432
assert $fn({}, {}) == {}
assert $fn({"a": {"b": 1}}, {"a": 2}) == {"a": 2}
''',
        alternatives=[
            "Using copy.deepcopy on the base and then updating in place is another route that also protects nested "
            "lists from aliasing, at the cost of copying everything even when little changes. My version shares "
            "unchanged nested values with the inputs, which is cheaper and usually fine, but worth noting in the "
            "docstring if callers mutate the result. An iterative version with an explicit stack avoids recursion, but "
            "config nesting is never deep enough to matter.",
        ])


@family
def caesar(rng, long):
    v = dict(fn=rng.choice(["caesar_shift", "caesar_cipher", "rotate_letters"]),
             arg=rng.choice(["text", "message", "plain"]),
             k=rng.choice(["shift", "key", "offset"]))
    return build(rng, v, long=long, cx="O(n) time",
        instruction=[
            "Write `$fn($arg, $k)` that applies a Caesar cipher: shift each ASCII letter by `$k` positions, wrapping "
            "around the alphabet and preserving case. Non-letters are unchanged; `$k` may be negative or larger than "
            "26.",
            "Implement `$fn($arg, $k)`: rotate every English letter in the string by `$k` places (keeping upper/lower "
            "case), leaving digits, spaces and punctuation alone.",
        ],
        reasoning=[
            ["For each letter I compute its offset from 'a' or 'A', add $k, and take the result modulo 26.",
             "Working with offsets from the base letter makes the wrap-around a simple modulo."],
            ["Python's % always returns a non-negative result for a positive modulus, so negative shifts work without "
             "extra care.",
             "Negative and large shifts are handled because (x + $k) % 26 is always in 0..25 in Python."],
            ["Only ASCII letters are shifted; I'll check membership in string.ascii_lowercase and ascii_uppercase "
             "rather than isalpha, which would include accented letters.",
             "str.isalpha is true for non-ASCII letters too, so I'll test against the ASCII ranges explicitly."],
            ["Building a translation table once with str.maketrans would be faster for long texts.", None],
            ["Decoding is just applying the negative shift.", None],
        ],
        intention=[
            "Build a translation table mapping each ASCII letter to its shifted counterpart and apply str.translate.",
            "Shift letters modulo 26 relative to their case's base, leaving other characters untouched.",
        ],
        code=r'''
import string


def $fn($arg, $k):
    """Shift ASCII letters in $arg by $k positions, preserving case."""
    $k %= 26
    lower, upper = string.ascii_lowercase, string.ascii_uppercase
    table = str.maketrans(
        lower + upper,
        lower[$k:] + lower[:$k] + upper[$k:] + upper[:$k],
    )
    return $arg.translate(table)
''',
        test='''
assert $fn("Hello, World!", 3) == "Khoor, Zruog!"
assert $fn("Khoor, Zruog!", -3) == "Hello, World!"
assert $fn("xyz", 29) == "abc"
assert $fn("café 123", 1) == "dbgé 123"
''',
        alternatives=[
            "A per-character loop with ord and chr is the most explicit implementation and is useful for teaching how "
            "the modulo arithmetic works, but it runs in Python bytecode for every character. Translation tables do "
            "the mapping in C. If I needed to support other alphabets, I would generalise the function to take the "
            "alphabet as a parameter and build the table from it, which the maketrans design makes easy.",
        ])


@family
def camel_to_snake(rng, long):
    v = dict(fn=rng.choice(["camel_to_snake", "to_snake_case", "snakeify"]),
             arg=rng.choice(["name", "identifier", "text"]))
    return build(rng, v, long=long, cx="O(n) time",
        instruction=[
            "Write `$fn($arg)` that converts a camelCase or PascalCase identifier to snake_case, treating runs of "
            "capitals as acronyms: 'parseHTTPResponse' -> 'parse_http_response'.",
            "Implement `$fn($arg)`: turn identifiers like 'getUserID' or 'XMLParser' into snake case ('get_user_id', "
            "'xml_parser').",
        ],
        reasoning=[
            ["The naive rule, put an underscore before every capital, breaks acronyms: 'XMLParser' would become "
             "'x_m_l_parser'.",
             "Inserting an underscore before each uppercase letter mishandles acronyms, so I need smarter boundaries."],
            ["A word boundary occurs between a lowercase letter or digit and an uppercase letter, and between an "
             "acronym and a following capitalised word (the 'LP' in 'XMLParser').",
             "Two boundary rules cover it: lower-or-digit followed by upper, and upper followed by upper-then-lower."],
            ["Two regex substitutions implement those rules, then I lowercase the result.",
             "I'll apply the acronym rule first, then the simple lower-to-upper rule, and lowercase at the end."],
            ["Names that are already snake_case pass through unchanged.", None],
        ],
        intention=[
            "Insert underscores at acronym-to-word and lower-to-upper boundaries with two regexes, then lowercase.",
            "Regex-based boundary detection that keeps acronyms together, followed by lower().",
        ],
        code=r'''
import re

_ACRONYM_BOUNDARY = re.compile(r"([A-Z]+)([A-Z][a-z])")
_WORD_BOUNDARY = re.compile(r"([a-z0-9])([A-Z])")


def $fn($arg):
    """Convert camelCase/PascalCase to snake_case, keeping acronyms together."""
    text = _ACRONYM_BOUNDARY.sub(r"\1_\2", $arg)
    text = _WORD_BOUNDARY.sub(r"\1_\2", text)
    return text.lower()
''',
        test='''
assert $fn("parseHTTPResponse") == "parse_http_response"
assert $fn("XMLParser") == "xml_parser"
assert $fn("getUserID") == "get_user_id"
assert $fn("already_snake") == "already_snake"
assert $fn("version2Update") == "version2_update"
''',
        alternatives=[
            "A manual scan that looks at the previous, current and next character can implement the same rules without "
            "regular expressions and makes every decision explicit. It is longer and has several index edge cases at "
            "the start and end of the string. Third-party libraries such as inflection provide underscore() with "
            "similar behaviour, but pulling in a dependency for two regexes isn't justified.",
        ])


@family
def word_wrap(rng, long):
    v = dict(fn=rng.choice(["wrap_text", "word_wrap", "fill_lines"]),
             arg=rng.choice(["text", "paragraph", "s"]),
             w=rng.choice(["width", "max_width", "line_length"]))
    return build(rng, v, long=long, cx="O(n) time",
        instruction=[
            "Write `$fn($arg, $w)` that greedily wraps text into lines of at most `$w` characters, breaking only at "
            "whitespace and returning a list of lines. A single word longer than `$w` goes on its own line unbroken.",
            "Implement `$fn($arg, $w)` without the textwrap module: split text into words and pack them greedily into "
            "lines no longer than `$w`, except for words that are themselves too long.",
        ],
        reasoning=[
            ["Greedy packing is optimal for minimising the number of lines: add words to the current line while they "
             "fit.",
             "I'll fill each line greedily, starting a new line when the next word would overflow."],
            ["str.split() with no arguments collapses all whitespace and drops empties, which is what I want.",
             "Splitting on arbitrary whitespace normalises spaces, tabs and newlines."],
            ["The length check must include the separating space: len(current) + 1 + len(word) <= $w.",
             "A classic off-by-one is forgetting the space between words when testing whether a word fits."],
            ["An over-long word is placed on its own line rather than split, as required.",
             "If a single word exceeds $w, it simply becomes its own line."],
            ["Empty or whitespace-only input gives an empty list.", None],
        ],
        intention=[
            "Split into words and greedily append each to the current line if it fits (counting the space), otherwise "
            "start a new line.",
            "Greedy line filling over whitespace-separated words, with long words allowed to overflow on their own "
            "line.",
        ],
        code=r'''
def $fn($arg, $w):
    """Greedily wrap $arg into lines of at most $w characters."""
    lines = []
    current = ""
    for word in $arg.split():
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= $w:
            current += " " + word
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines
''',
        test='''
assert $fn("the quick brown fox jumps", 10) == ["the quick", "brown fox", "jumps"]
assert $fn("", 5) == []
assert $fn("a verylongword b", 4) == ["a", "verylongword", "b"]
assert $fn("  spaced   out  ", 20) == ["spaced out"]
''',
        alternatives=[
            "Greedy wrapping minimises the number of lines but can leave very ragged right edges. Knuth-Plass style "
            "minimum-raggedness wrapping uses dynamic programming over break points to minimise the sum of squared "
            "trailing spaces, producing nicer paragraphs at O(n^2) cost. For a utility that just needs lines within a "
            "width, greedy is standard, and it is what textwrap does by default apart from its options for breaking "
            "long words.",
        ])


@family
def format_duration(rng, long):
    v = dict(fn=rng.choice(["format_duration", "humanize_seconds", "duration_string"]),
             arg=rng.choice(["seconds", "total_seconds", "secs"]))
    return build(rng, v, long=long, cx="O(1) time",
        instruction=[
            "Write `$fn($arg)` that turns a non-negative number of seconds into a compact string like '1d 2h 3m 4s', "
            "omitting zero components; 0 should give '0s'.",
            "Implement `$fn($arg)`: express an integer duration in days, hours, minutes and seconds, skipping units "
            "that are zero (e.g. 3661 -> '1h 1m 1s'). Raise ValueError for negative input.",
        ],
        reasoning=[
            ["Repeated divmod by 60, 60 and 24 splits the total into units.",
             "I'll peel off seconds, minutes and hours with divmod, leaving days."],
            ["Components that are zero are omitted, so I collect only non-zero parts.",
             "Only non-zero units appear in the output, in descending order of size."],
            ["Zero seconds would produce an empty list, so it needs the special case '0s'.",
             "The all-zero case must still print something, hence '0s'."],
            ["Negative durations are rejected.", None],
        ],
        intention=[
            "Split the seconds with divmod into d/h/m/s and join the non-zero parts, falling back to '0s'.",
            "Compute days, hours, minutes and seconds via divmod and format the non-zero ones.",
        ],
        code=r'''
def $fn($arg):
    """Format a non-negative number of seconds like '1d 2h 3m 4s'."""
    if $arg < 0:
        raise ValueError("$arg must be non-negative")
    minutes, secs_part = divmod(int($arg), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [
        "%d%s" % (amount, unit)
        for amount, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (secs_part, "s"))
        if amount
    ]
    return " ".join(parts) or "0s"
''',
        test='''
assert $fn(3661) == "1h 1m 1s"
assert $fn(0) == "0s"
assert $fn(86400 + 4) == "1d 4s"
assert $fn(59) == "59s"
''',
        alternatives=[
            "datetime.timedelta can do the splitting and its str() gives '1 day, 1:01:01', but that format differs "
            "from the requested compact form, so I'd still need to pick fields apart. A table-driven loop over (unit, "
            "size) pairs generalises better if weeks or years were added later; with four fixed units the explicit "
            "divmod chain is easier to read.",
        ])


@family
def to_base(rng, long):
    v = dict(fn=rng.choice(["to_base", "int_to_base", "format_in_base"]),
             arg=rng.choice(["n", "number", "value"]),
             b=rng.choice(["base", "radix"]))
    return build(rng, v, long=long, cx="O(log n) time",
        instruction=[
            "Write `$fn($arg, $b)` that converts an integer to its string representation in base `$b` (2 to 36), using "
            "digits 0-9 then lowercase letters, with a leading '-' for negatives.",
            "Implement `$fn($arg, $b)`: the inverse of int(s, $b) for bases 2..36. Raise ValueError for an unsupported "
            "base.",
        ],
        reasoning=[
            ["Repeated divmod by the base yields digits from least to most significant.",
             "The standard method collects remainders of repeated division, then reverses them."],
            ["Zero is a special case, since the loop would produce no digits.",
             "I need to return '0' for zero explicitly."],
            ["For negatives I convert the absolute value and prepend '-'.",
             "Handling the sign separately keeps the digit loop simple."],
            ["Digits come from '0123456789abcdefghijklmnopqrstuvwxyz', which covers base 36.", None],
            ["A round trip through int(result, $b) is an easy property to test.", None],
        ],
        intention=[
            "Validate the base, handle zero and sign, collect divmod remainders as digit characters, and reverse them.",
            "Repeated division by $b to produce digits, then join them in reverse with an optional minus sign.",
        ],
        code=r'''
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def $fn($arg, $b):
    """Return $arg written in base $b (2..36)."""
    if not 2 <= $b <= 36:
        raise ValueError("$b must be in 2..36")
    if $arg == 0:
        return "0"
    sign = "-" if $arg < 0 else ""
    $arg = abs($arg)
    digits = []
    while $arg:
        $arg, remainder = divmod($arg, $b)
        digits.append(_DIGITS[remainder])
    return sign + "".join(reversed(digits))
''',
        test='''
assert $fn(255, 16) == "ff"
assert $fn(-10, 2) == "-1010"
assert $fn(0, 7) == "0"
assert all(int($fn(x, bb), bb) == x for x in range(-50, 50) for bb in (2, 3, 8, 36))
''',
        alternatives=[
            "A recursive version, to_base(n // b) + digit, reads nicely but builds many intermediate strings and "
            "recurses once per digit. For bases 2, 8 and 16 Python's format(n, 'b'), 'o' and 'x' already do the job, "
            "and numpy.base_repr covers other bases, but a general-purpose helper without dependencies is what's "
            "requested.",
        ])


@family
def longest_unique_substring(rng, long):
    v = dict(fn=rng.choice(["longest_unique_substring", "longest_distinct_run", "max_unique_window"]),
             arg=rng.choice(["s", "text", "chars"]))
    return build(rng, v, long=long, cx="O(n) time and O(alphabet) space",
        instruction=[
            "Write `$fn($arg)` that returns the length of the longest substring of `$arg` without repeating "
            "characters.",
            "Implement `$fn($arg)` in linear time: find the length of the longest contiguous run of characters in "
            "which no character appears twice.",
        ],
        reasoning=[
            ["Checking every substring is O(n^3), or O(n^2) with a set; a sliding window does it in O(n).",
             "A sliding window with a left boundary that only moves forward gives linear time."],
            ["I'll remember the last index where each character was seen.",
             "A dict from character to its most recent index lets me jump the left edge directly."],
            ["When the current character was seen inside the window, the left edge jumps to just after that "
             "occurrence.",
             "If the previous occurrence is at or after the left edge, the window must start after it."],
            ["The max() guard is important: the left edge must never move backwards because of an old occurrence "
             "outside the window.",
             "Old occurrences before the window must be ignored, otherwise the left boundary could move backwards."],
            ["The window length right - left + 1 is compared with the best so far at each step.", None],
        ],
        intention=[
            "Slide a window, tracking each character's last index and moving the left edge past repeats, keeping the "
            "maximum width.",
            "Last-seen-index sliding window where the start jumps forward past duplicates.",
        ],
        code=r'''
def $fn($arg):
    """Return the length of the longest substring without repeated characters."""
    last_seen = {}
    left = best = 0
    for right, ch in enumerate($arg):
        if last_seen.get(ch, -1) >= left:
            left = last_seen[ch] + 1
        last_seen[ch] = right
        best = max(best, right - left + 1)
    return best
''',
        test='''
assert $fn("abcabcbb") == 3
assert $fn("bbbbb") == 1
assert $fn("pwwkew") == 3
assert $fn("") == 0
assert $fn("abba") == 2
''',
        alternatives=[
            "A set-based sliding window removes characters from the left one at a time until the duplicate is gone; it "
            "is also linear overall since each character enters and leaves once, and some find it easier to reason "
            "about. The last-index dictionary version skips directly, which saves work on long windows. For a known "
            "small alphabet, a fixed-size array indexed by ord would replace the dict for speed.",
        ])


@family
def trie(rng, long):
    v = dict(cls=rng.choice(["Trie", "PrefixTree", "WordTrie"]),
             has=rng.choice(["starts_with", "has_prefix", "any_with_prefix"]))
    v.update(fn=v["cls"], arg="word", what="class")
    return build(rng, v, long=long, cx="O(L) time per operation for a word of length L",
        instruction=[
            "Implement a class `$cls` with methods `insert(word)`, `search(word)` returning whether the exact word was "
            "inserted, and `$has(prefix)` returning whether any inserted word starts with the prefix.",
            "Write a prefix tree `$cls` supporting insertion of words, exact lookup via `search`, and prefix queries "
            "via `$has`.",
        ],
        reasoning=[
            ["Each node holds a dict of children keyed by character and a flag marking the end of a word.",
             "A trie node is just a mapping from character to child plus an end-of-word marker."],
            ["Insert walks down, creating nodes as needed, and sets the flag on the last node.",
             "Insertion creates missing children along the path and marks the final node."],
            ["search and $has share a helper that walks the path and returns the final node or None.",
             "Both queries need to follow a path, so I'll factor that into a _walk helper."],
            ["search additionally requires the end flag, because 'app' is a prefix of 'apple' but not necessarily a "
             "word.",
             "The difference between the two queries is only the end-of-word flag."],
            ["The empty prefix matches as soon as any word was inserted.", None],
        ],
        intention=[
            "Use nested node objects with a children dict and an is_word flag; share a path-walking helper between the "
            "queries.",
            "A dict-based trie where search checks the end flag and $has only checks the path exists.",
        ],
        code=r'''
class _Node:
    __slots__ = ("children", "is_word")

    def __init__(self):
        self.children = {}
        self.is_word = False


class $cls:
    """Prefix tree supporting insert, exact search and prefix queries."""

    def __init__(self):
        self._root = _Node()
        self._size = 0

    def insert(self, word):
        node = self._root
        for ch in word:
            node = node.children.setdefault(ch, _Node())
        if not node.is_word:
            node.is_word = True
            self._size += 1

    def _walk(self, text):
        node = self._root
        for ch in text:
            node = node.children.get(ch)
            if node is None:
                return None
        return node

    def search(self, word):
        node = self._walk(word)
        return node is not None and node.is_word

    def $has(self, prefix):
        node = self._walk(prefix)
        return node is not None and (node.is_word or bool(node.children))

    def __len__(self):
        return self._size
''',
        test='''
t = $cls()
for w in ("apple", "app", "bat"):
    t.insert(w)
t.insert("app")
assert t.search("app") and t.search("apple") and not t.search("ap")
assert t.$has("ap") and t.$has("b") and not t.$has("c")
assert len(t) == 3
assert not $cls().$has("")
assert t.$has("")
''',
        alternatives=[
            "A sorted list of words with bisect can answer prefix queries too: find the insertion point of the prefix "
            "and check whether the word there starts with it. Inserts are O(n) due to shifting, but memory use is much "
            "lower than a trie full of small dicts. A set of all prefixes answers $has in O(L) but multiplies memory "
            "by the average word length. The trie is the canonical structure when inserts and prefix queries "
            "interleave.",
        ])


@family
def num_islands(rng, long):
    v = dict(fn=rng.choice(["count_islands", "num_islands", "island_count"]),
             arg=rng.choice(["grid", "world", "cells"]))
    return build(rng, v, long=long, cx="O(R * C) time and space",
        instruction=[
            "Write `$fn($arg)` where `$arg` is a list of equal-length strings of '1' (land) and '0' (water). Return "
            "the number of islands, i.e. groups of land cells connected horizontally or vertically.",
            "Implement `$fn($arg)`: count 4-connected components of '1' cells in a grid given as a list of strings, "
            "without modifying the input.",
        ],
        reasoning=[
            ["Each island is a connected component, so I scan cells and flood-fill from each unvisited land cell.",
             "Counting islands means counting how many flood fills I have to start."],
            ["Strings are immutable and I must not modify the input anyway, so I'll keep a visited set.",
             "Rather than overwriting cells, I'll mark visits in a separate set."],
            ["An explicit stack avoids recursion depth problems on large islands.",
             "Recursive DFS could overflow on a big island, so I'll use an iterative stack."],
            ["Only horizontal and vertical neighbours count, not diagonals.",
             "Diagonal neighbours do not connect islands, per the statement."],
            ["An empty grid has zero islands.", None],
        ],
        intention=[
            "Scan all cells; for each unvisited '1', increment the count and flood-fill its island with an explicit "
            "stack.",
            "Iterative DFS flood fill over 4-neighbours, counting how many fills start.",
        ],
        code=r'''
def $fn($arg):
    """Count 4-connected islands of '1' cells."""
    rows = len($arg)
    cols = len($arg[0]) if rows else 0
    seen = set()
    islands = 0
    for r in range(rows):
        for c in range(cols):
            if $arg[r][c] != "1" or (r, c) in seen:
                continue
            islands += 1
            seen.add((r, c))
            stack = [(r, c)]
            while stack:
                cr, cc = stack.pop()
                for nr, nc in ((cr + 1, cc), (cr - 1, cc), (cr, cc + 1), (cr, cc - 1)):
                    if 0 <= nr < rows and 0 <= nc < cols and $arg[nr][nc] == "1" and (nr, nc) not in seen:
                        seen.add((nr, nc))
                        stack.append((nr, nc))
    return islands
''',
        test='''
assert $fn(["11000", "11000", "00100", "00011"]) == 3
assert $fn([]) == 0
assert $fn(["101", "010", "101"]) == 5
assert $fn(["1" * 200] * 200) == 1
''',
        alternatives=[
            "Union-find over land cells, uniting each cell with its right and down neighbours, counts components "
            "without any traversal and adapts well to the online variant where land is added cell by cell. BFS with a "
            "deque works just as well as DFS; the choice only changes the visiting order, not the result or the "
            "complexity. If mutation were allowed, overwriting visited land with '0' in a list-of-lists copy would "
            "remove the need for the set.",
        ])


@family
def unique_paths(rng, long):
    v = dict(fn=rng.choice(["count_paths", "unique_paths", "lattice_routes"]),
             arg=rng.choice(["grid", "obstacles", "board"]))
    return build(rng, v, long=long, cx="O(R * C) time and O(C) space",
        instruction=[
            "Write `$fn($arg)` where `$arg` is a list of lists of 0 (free) and 1 (blocked). Count the paths from the "
            "top-left to the bottom-right cell that move only right or down and avoid blocked cells.",
            "Implement `$fn($arg)`: a robot moves only right or down on a grid with obstacles marked 1. Return the "
            "number of distinct routes from the top-left corner to the bottom-right corner.",
        ],
        reasoning=[
            ["Paths into a cell come only from above or from the left, so ways[r][c] = ways[r-1][c] + ways[r][c-1] for "
             "free cells.",
             "The count for a cell is the sum of counts of its top and left neighbours, or zero if blocked."],
            ["Blocked cells contribute zero, which naturally stops paths through them.",
             "Setting obstacles to zero propagates correctly: no path can pass through them."],
            ["A single row of counts suffices: when processing row r, ways[c] still holds the value from above and "
             "ways[c-1] the value to the left.",
             "I can keep one list of length C and update it in place row by row."],
            ["If the start cell is blocked, the answer is 0.",
             "The start cell seeds the count with 1 only when it is free."],
            ["Python integers don't overflow, so large grids are fine.", None],
        ],
        intention=[
            "Row-by-row DP over a single list, zeroing blocked cells and adding the left neighbour's count.",
            "Count paths with a rolling 1-D DP where each free cell sums its top and left counts.",
        ],
        code=r'''
def $fn($arg):
    """Count right/down paths from top-left to bottom-right avoiding 1-cells."""
    if not $arg or not $arg[0]:
        return 0
    cols = len($arg[0])
    ways = [0] * cols
    ways[0] = 1 if $arg[0][0] == 0 else 0
    for row in $arg:
        for c in range(cols):
            if row[c] == 1:
                ways[c] = 0
            elif c > 0:
                ways[c] += ways[c - 1]
    return ways[-1]
''',
        test='''
assert $fn([[0, 0, 0], [0, 1, 0], [0, 0, 0]]) == 2
assert $fn([[1]]) == 0
assert $fn([[0] * 3] * 3) == 6
assert $fn([[0, 1], [1, 0]]) == 0
''',
        alternatives=[
            "Without obstacles the answer is the binomial coefficient C(R + C - 2, R - 1), computable with math.comb "
            "in O(1) arithmetic operations, but obstacles break the closed form. Inclusion-exclusion over obstacles "
            "sorted by position can extend the formula when there are only a few blocked cells on a huge grid. "
            "Memoised recursion from the goal mirrors the recurrence but risks deep recursion. The rolling DP handles "
            "everything in linear time in the grid size.",
        ])


# ---------------------------------------------------------------------------
# Generation and verification
# ---------------------------------------------------------------------------


def verify(record, test_source):
    """Parse and execute a record's code, then run its family assertions."""
    for key in ("id", "instruction", "reasoning", "intention", "code", "language"):
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            raise AssertionError("%s: empty or missing field %r" % (record.get("id"), key))
        for tag in FORBIDDEN:
            if tag in value:
                raise AssertionError("%s: forbidden tag %r in %s" % (record["id"], tag, key))
    tree = ast.parse(record["code"])
    compile(tree, record["id"], "exec")
    namespace = {"__name__": "sample_check"}
    exec(record["code"], namespace)
    exec(test_source, namespace)


def generate(n=N_RECORDS, seed=0):
    """Return a list of (record, test_source) pairs; deterministic for a seed."""
    rng = random.Random(seed)
    order = []
    while len(order) < n:
        batch = list(FAMILIES)
        rng.shuffle(batch)
        order.extend(batch)
    order = order[:n]
    long_slots = set(rng.sample(range(n), round(n * LONG_FRACTION)))
    seen = set()
    out = []
    for index, fam in enumerate(order):
        for _ in range(100):
            record, test = fam(rng, index in long_slots)
            key = (record["instruction"], record["reasoning"], record["code"])
            if key not in seen:
                break
        else:
            raise RuntimeError("could not make a unique record for %s" % fam.__name__)
        seen.add(key)
        record = {"id": "sample-%04d" % (index + 1), **record}
        out.append((record, test))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/sample.jsonl",
                        help="output JSONL path (default: %(default)s)")
    parser.add_argument("-n", type=int, default=N_RECORDS,
                        help="number of records (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="only generate and verify; do not write the file")
    args = parser.parse_args(argv)

    pairs = generate(args.n)
    for record, test in pairs:
        try:
            verify(record, test)
        except Exception as exc:  # report which record failed, then re-raise
            print("verification failed for %s: %r" % (record["id"], exc), file=sys.stderr)
            raise
    print("verified %d records from %d families" % (len(pairs), len(FAMILIES)),
          file=sys.stderr)
    if args.check:
        return 0
    with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
        for record, _ in pairs:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    print("wrote %s" % args.out, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

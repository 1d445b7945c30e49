"""plain_data.to_plain: what a candidate returns, as the test receives it (the sandbox runner's wrapper)."""

import builtins
from collections import OrderedDict, namedtuple

import numpy as np
import pytest

from reasoning_sft.eval.plain_data import NotPlainData, plain_returns, to_plain


def test_builtin_values_are_handed_over_as_they_are():
    nested = {"a": [1, 2.5, (3, "x", b"y")], (1, 2): {frozenset({1}), None}, 3: {True: 1j}}
    for value in (None, True, 0, -7, 1.5, float("nan"), 2j, "s", b"b", [], (), {}, set(), frozenset(), nested):
        assert to_plain(value) is value


def test_subclasses_become_their_builtin_type_without_running_their_overrides():
    calls = []

    class Liar(int):
        def __eq__(self, other):
            calls.append("__eq__")
            return True
        __hash__ = int.__hash__

        def __index__(self):
            calls.append("__index__")
            return 99

    class Text(str):
        def __str__(self):
            calls.append("__str__")
            return "other"

    class Items(list):
        def __iter__(self):
            calls.append("__iter__")
            return iter([99])

    Pair = namedtuple("Pair", "a b")
    converted = to_plain([Liar(3), Text("t"), Items([1, Liar(2)]), Pair(1, 2), OrderedDict(z=Liar(1)), np.float64(0.5)])
    assert converted == [3, "t", [1, 2], (1, 2), {"z": 1}, 0.5] and not calls
    assert [type(v) for v in converted] == [int, str, list, tuple, dict, float]
    assert type(converted[2][1]) is int and type(converted[4]["z"]) is int


def test_numpy_scalars_become_python_scalars_and_arrays_are_refused():
    assert to_plain([np.int64(3), np.bool_(True), np.float32(0.5)]) == [3, True, 0.5]
    assert [type(v) for v in to_plain([np.int64(3), np.bool_(True), np.float32(0.5)])] == [int, bool, float]
    with pytest.raises(NotPlainData, match="returned a numpy.ndarray, not plain data"):
        to_plain(np.array([1, 2]))
    with pytest.raises(NotPlainData, match="numpy.datetime64"):  # .item() is a datetime: not plain either
        to_plain(np.datetime64("2024-01-01"))


def test_other_objects_cycles_and_deep_nesting_are_refused():
    class Anything:
        def __eq__(self, other):
            return True
        __hash__ = object.__hash__

    cycle = []
    cycle.append(cycle)
    deep = 0
    for _ in range(200):
        deep = [deep]
    for value, reason in ((Anything(), "Anything, not plain data"), ({Anything(): 1}, "Anything"),
                          (iter([]), "a list_iterator"), (cycle, "a cycle"), (deep, "nested deeper than 100")):
        with pytest.raises(NotPlainData, match=reason):
            to_plain(value)


def test_shared_containers_are_converted_once():
    """A DAG of 2**60 paths converts in linear time, and what was shared stays shared."""
    class Num(int):
        pass

    node = [Num(1)]
    for _ in range(60):
        node = [node, node]
    converted = to_plain(node)
    assert converted[0] is converted[1] and type(converted[0][0]) is list


def test_replacing_builtins_afterwards_does_not_change_the_conversion():
    class Anything:
        def __eq__(self, other):
            return True

    saved = builtins.issubclass, builtins.any
    builtins.issubclass = builtins.any = lambda *args: True  # as a sample could; pytest itself cannot run so
    try:
        to_plain(Anything())
        outcome = "converted"
    except NotPlainData as err:
        outcome = str(err)
    finally:
        builtins.issubclass, builtins.any = saved
    assert outcome.endswith("<locals>.Anything, not plain data"), outcome


def test_the_wrapper_reports_the_failure_even_when_the_caller_swallows_it():
    failures = []
    candidate = plain_returns(lambda: object(), "f", failures.append)
    with pytest.raises(NotPlainData):
        candidate()
    assert failures == ["f returned an object, not plain data"]
    assert plain_returns(lambda x, y=1: [x, y], "g", failures.append)(2, y=3) == [2, 3] and len(failures) == 1

"""What a candidate returns reaches the test as plain data. Standard library only.

The sandbox runner loads this file by path (it runs with `python -I`, without the package on
sys.path) and wraps the function that a problem's `check(candidate)` receives. Without it a
sample can return an object whose `__eq__` is always true and pass every `assert candidate(x) == y`.

    builtin values      None, bool, int, float, complex, str, bytes, and tuples, lists, dicts,
                        sets and frozensets of them, nested: handed over as they are
    their subclasses    (numpy.float64, an int subclass that overrides __eq__, a namedtuple)
                        converted to the builtin type through the builtin's own methods, so no
                        override of the subclass runs
    numpy scalars       numpy.int64, numpy.bool_, ... (only when the sample imported numpy):
                        their numpy.generic.item(), which must be a builtin scalar
    anything else       the sample fails: "returned a Foo, not plain data"

Types are compared by identity (`is`), never with `==` or `in`, which a metaclass can override.
"""

import builtins
import sys

# Functions defined below look builtins up in this frozen copy: a sample that replaces
# builtins.isinstance, type, zip, ... after this module was loaded changes nothing here.
__builtins__ = dict(vars(builtins))

MAX_DEPTH = 100  # far above any real answer; deeper nesting fails instead of recursing on
SCALARS = (type(None), bool, int, float, complex, str, bytes)
CONTAINERS = (tuple, list, dict, set, frozenset)
# a subclass instance's value, read through the builtin's own slot (an override of __index__, __str__, ... never runs)
TO_BUILTIN = (
    (int, int.__index__),
    (float, float.__float__),
    (str, str.__str__),
    (bytes, lambda value: bytes.__getitem__(value, slice(None))),
    (complex, lambda value: complex(complex.real.__get__(value), complex.imag.__get__(value))),
)
ITERATE = ((tuple, tuple.__iter__), (list, list.__iter__), (set, set.__iter__), (frozenset, frozenset.__iter__))
_dict_items = dict.items
_type_name = vars(type)["__qualname__"].__get__  # type's own getters: no metaclass property runs
_type_module = vars(type)["__module__"].__get__
_modules = sys.modules


class NotPlainData(Exception):
    """What a candidate returned cannot be handed to the test as plain data."""


def _one_of(kind, kinds):
    return any(kind is k for k in kinds)


def _describe(kind):
    """"a Foo", "a numpy.ndarray", "an Obj". The sample's own
    classes (module __program__) and builtins go unqualified; a class may store anything as its
    __module__: only a str is used."""
    name, module = _type_name(kind), _type_module(kind)
    name = name if type(name) is str else "object"
    if type(module) is str and module not in ("builtins", "__program__"):
        name = f"{module}.{name}"
    return f"{'an' if name[:1].lower() in ('a', 'e', 'i', 'o', 'u') else 'a'} {name}"


def _numpy_item(value):
    """(numpy.generic.item(value),) when numpy is loaded and value is one of its scalars, else None."""
    generic = getattr(_modules.get("numpy"), "generic", None)
    if type(generic) is not type or not issubclass(type(value), generic):
        return None
    return (generic.item(value),)


class _Converter:
    """One conversion. A container met twice is converted once (shared stays shared, no blow-up
    on a deep DAG); one met again inside itself is a cycle."""

    def __init__(self):
        self.done = {}      # id -> (original, converted): holding the original keeps its id unique
        self.open = set()   # ids of the containers being converted right now

    def convert(self, value, depth):
        kind = type(value)
        if _one_of(kind, SCALARS):
            return value
        if depth >= MAX_DEPTH:
            raise NotPlainData(f"returned data nested deeper than {MAX_DEPTH} levels")
        for base in CONTAINERS:
            if issubclass(kind, base):
                return self._container(value, base, depth)
        for base, to_builtin in TO_BUILTIN:  # bool cannot be subclassed: an int subclass is never a bool
            if issubclass(kind, base):
                return to_builtin(value)
        item = _numpy_item(value)
        if item is not None and _one_of(type(item[0]), SCALARS):
            return item[0]
        raise NotPlainData(f"returned {_describe(kind)}, not plain data")

    def _container(self, value, base, depth):
        key = id(value)
        if key in self.done:
            return self.done[key][1]
        if key in self.open:
            raise NotPlainData("returned a container that holds itself (a cycle)")
        self.open.add(key)
        if base is dict:
            old = list(_dict_items(value))
            new = [(self.convert(k, depth + 1), self.convert(v, depth + 1)) for k, v in old]
            unchanged = all(a is k and b is v for (a, b), (k, v) in zip(new, old))
        else:
            old = list(dict(ITERATE)[base](value))
            new = [self.convert(item, depth + 1) for item in old]
            unchanged = all(a is b for a, b in zip(new, old))
        converted = value if unchanged and type(value) is base else self._build(base, new)
        self.open.discard(key)
        self.done[key] = (value, converted)
        return converted

    @staticmethod
    def _build(base, items):
        try:
            return base(items)
        except TypeError:  # a hashable subclass became an unhashable builtin (a tuple holding a list)
            raise NotPlainData(f"returned a {base.__name__} whose items are not hashable as plain data") from None


def to_plain(value):
    """value as builtin data (see the module's docstring); NotPlainData when it is not."""
    return _Converter().convert(value, 0)


def plain_returns(function, name, on_failure):
    """function, with every return value passed through to_plain. When that fails,
    on_failure(message) is called before NotPlainData is raised: a test that catches every
    exception cannot hide the failure."""

    def candidate(*args, **kwargs):
        result = function(*args, **kwargs)
        try:
            return to_plain(result)
        except NotPlainData as err:
            message = f"{name} {err}"
        except BaseException as err:  # RecursionError, or a hostile subclass's slot raising: not plain either
            message = f"{name} returned a value that could not be read as plain data ({type(err).__name__})"
        on_failure(message)
        raise NotPlainData(message)

    return candidate

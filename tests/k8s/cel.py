"""A small evaluator for the subset of CEL used by ``x-kubernetes-validations`` rules of the vendored CRDs.

Kubernetes evaluates these rules in the API server; offline we evaluate them here so that, for example, a
Karpenter requirement with operator ``In`` and no values, or a ScaledObject with ``minReplicaCount >
maxReplicaCount``, is rejected without a cluster. Supported: literals (int, float, string, bool, null,
lists), ``self``, field selection, indexing, ``has()``, the macros ``all``, ``exists``, ``exists_one``,
``filter``, ``map`` over lists and map keys, ``! && || ?: == != < <= > >= in + - * / %``, ``size``, ``int``,
``string``, ``matches``, ``startsWith``, ``endsWith``, ``contains``, ``split``, ``find``, ``lowerAscii``,
``upperAscii``. Anything else raises
:class:`CelUnsupported` so that a caller can tell "not evaluated" apart from "failed".

Transition rules (those that mention ``oldSelf``) only apply to updates; callers skip them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any


class CelError(Exception):
    """Runtime error of a rule (e.g. selecting a missing field): the rule does not hold."""


class CelUnsupported(Exception):
    """The rule uses syntax or a function this evaluator does not implement."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>\d+\.\d+|\d+)
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>&&|\|\||==|!=|<=|>=|[!<>?:.,()\[\]+\-*/%])
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)

_MACROS = {"all", "exists", "exists_one", "filter", "map"}


def _tokenize(src: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    src = src.rstrip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise CelUnsupported(f"cannot tokenize at {src[pos : pos + 20]!r}")
        pos = m.end()
        if m.group("num") is not None:
            text = m.group("num")
            tokens.append(("lit", float(text) if "." in text else int(text)))
        elif m.group("str") is not None:
            body = m.group("str")[1:-1]
            tokens.append(("lit", re.sub(r"\\(.)", r"\1", body)))
        elif m.group("op") is not None:
            tokens.append(("op", m.group("op")))
        else:
            word = m.group("ident")
            if word in ("true", "false"):
                tokens.append(("lit", word == "true"))
            elif word == "null":
                tokens.append(("lit", None))
            elif word == "in":
                tokens.append(("op", "in"))
            else:
                tokens.append(("ident", word))
    tokens.append(("end", None))
    return tokens


class _Parser:
    def __init__(self, src: str) -> None:
        self.tokens = _tokenize(src)
        self.i = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.i]

    def take(self, kind: str | None = None, value: Any = None) -> tuple[str, Any]:
        tok = self.tokens[self.i]
        if (kind and tok[0] != kind) or (value is not None and tok[1] != value):
            raise CelUnsupported(f"expected {value or kind}, got {tok[1]!r}")
        self.i += 1
        return tok

    def accept(self, value: str) -> bool:
        if self.peek() == ("op", value):
            self.i += 1
            return True
        return False

    def parse(self) -> tuple:
        node = self.ternary()
        self.take("end")
        return node

    def ternary(self) -> tuple:
        cond = self.binary(0)
        if self.accept("?"):
            a = self.ternary()
            self.take("op", ":")
            b = self.ternary()
            return ("?:", cond, a, b)
        return cond

    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",),
        ("&&",),
        ("==", "!=", "<", "<=", ">", ">=", "in"),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def binary(self, level: int) -> tuple:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in self._LEVELS[level]:
            op = self.take()[1]
            right = self.binary(level + 1)
            left = ("bin", op, left, right)
        return left

    def unary(self) -> tuple:
        if self.accept("!"):
            return ("not", self.unary())
        if self.accept("-"):
            return ("neg", self.unary())
        return self.postfix()

    def args(self) -> list[tuple]:
        out: list[tuple] = []
        if self.accept(")"):
            return out
        while True:
            out.append(self.ternary())
            if self.accept(")"):
                return out
            self.take("op", ",")

    def postfix(self) -> tuple:
        node = self.primary()
        while True:
            if self.accept("."):
                name = self.take("ident")[1]
                node = ("call", name, node, self.args()) if self.accept("(") else ("sel", node, name)
            elif self.accept("["):
                index = self.ternary()
                self.take("op", "]")
                node = ("idx", node, index)
            else:
                return node

    def primary(self) -> tuple:
        kind, value = self.peek()
        if kind == "lit":
            self.i += 1
            return ("lit", value)
        if kind == "ident":
            self.i += 1
            if self.accept("("):
                return ("call", value, None, self.args())
            return ("var", value)
        if self.accept("("):
            node = self.ternary()
            self.take("op", ")")
            return node
        if self.accept("["):
            items: list[tuple] = []
            if not self.accept("]"):
                while True:
                    items.append(self.ternary())
                    if self.accept("]"):
                        break
                    self.take("op", ",")
            return ("list", items)
        raise CelUnsupported(f"unexpected token {value!r}")


def _select(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        if name in obj:
            return obj[name]
        raise CelError(f"no such key: {name}")
    raise CelError(f"cannot select {name!r} from {type(obj).__name__}")


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise CelError(f"expected bool, got {type(value).__name__}")
    return value


def _size(value: Any) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise CelError(f"size() of {type(value).__name__}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise CelError("int() of bool")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise CelError(f"int({value!r})") from exc


def _find(s: str, pattern: str) -> str:
    m = re.search(pattern, s)
    return m.group(0) if m else ""


_METHODS: dict[str, Callable[..., Any]] = {
    "size": _size,
    "matches": lambda s, p: re.search(p, s) is not None,
    "startsWith": lambda s, p: s.startswith(p),
    "endsWith": lambda s, p: s.endswith(p),
    "contains": lambda s, p: p in s,
    "split": lambda s, sep: s.split(sep),
    "find": _find,
    "lowerAscii": lambda s: s.lower(),
    "upperAscii": lambda s: s.upper(),
}

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "size": _size,
    "int": _to_int,
    "string": lambda v: v if isinstance(v, str) else str(v),
    "double": float,
}


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return bool(a == b and type(a) is type(b)) or (_num(a) and _num(b) and a == b)
    if op == "!=":
        return not _compare("==", a, b)
    if op == "in":
        if isinstance(b, dict):
            return a in b
        if isinstance(b, list):
            return any(_compare("==", a, x) for x in b)
        raise CelError("'in' needs a list or map")
    if not ((_num(a) and _num(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise CelError(f"cannot compare {type(a).__name__} and {type(b).__name__}")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _eval(node: tuple, env: dict[str, Any]) -> Any:
    tag = node[0]
    if tag == "lit":
        return node[1]
    if tag == "var":
        if node[1] not in env:
            raise CelUnsupported(f"unknown identifier {node[1]!r}")
        return env[node[1]]
    if tag == "list":
        return [_eval(n, env) for n in node[1]]
    if tag == "sel":
        return _select(_eval(node[1], env), node[2])
    if tag == "idx":
        obj, key = _eval(node[1], env), _eval(node[2], env)
        try:
            return obj[key]
        except (KeyError, IndexError, TypeError) as exc:
            raise CelError(f"bad index {key!r}") from exc
    if tag == "not":
        return not _truth(_eval(node[1], env))
    if tag == "neg":
        value = _eval(node[1], env)
        if not _num(value):
            raise CelError("negation of a non-number")
        return -value
    if tag == "?:":
        return _eval(node[2] if _truth(_eval(node[1], env)) else node[3], env)
    if tag == "bin":
        return _binary(node[1], node[2], node[3], env)
    if tag == "call":
        return _call(node[1], node[2], node[3], env)
    raise CelUnsupported(f"node {tag}")


def _binary(op: str, left: tuple, right: tuple, env: dict[str, Any]) -> Any:
    if op in ("&&", "||"):
        # CEL's logical operators absorb an error on one side when the other side decides the result.
        short = op == "||"
        try:
            a = _truth(_eval(left, env))
        except CelError:
            if _truth(_eval(right, env)) is short:
                return short
            raise
        if a is short:
            return short
        return _truth(_eval(right, env))
    a, b = _eval(left, env), _eval(right, env)
    if op in ("==", "!=", "<", "<=", ">", ">=", "in"):
        return _compare(op, a, b)
    if op == "+":
        if (_num(a) and _num(b)) or (type(a) is type(b) and isinstance(a, str | list)):
            return a + b
        raise CelError("bad operands for +")
    if not (_num(a) and _num(b)):
        raise CelError(f"bad operands for {op}")
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise CelError("division by zero")
    if op == "/":
        return a // b if isinstance(a, int) and isinstance(b, int) else a / b
    return a % b


def _call(name: str, target: tuple | None, args: list[tuple], env: dict[str, Any]) -> Any:
    if target is None:
        if name == "has":
            if len(args) != 1 or args[0][0] != "sel":
                raise CelUnsupported("has() needs a field selection")
            obj = _eval(args[0][1], env)
            return isinstance(obj, dict) and args[0][2] in obj
        if name not in _FUNCTIONS:
            raise CelUnsupported(f"function {name}()")
        return _FUNCTIONS[name](*[_eval(a, env) for a in args])
    if name in _MACROS:
        if len(args) != 2 or args[0][0] != "var":
            raise CelUnsupported(f"macro {name} form")
        coll = _eval(target, env)
        if isinstance(coll, dict):
            items = list(coll.keys())
        elif isinstance(coll, list):
            items = coll
        else:
            raise CelError(f"{name}() over {type(coll).__name__}")
        var, body = args[0][1], args[1]

        def each(x: Any) -> Any:
            return _eval(body, {**env, var: x})

        if name == "all":
            return all(_truth(each(x)) for x in items)
        if name == "exists":
            return any(_truth(each(x)) for x in items)
        if name == "exists_one":
            return sum(1 for x in items if _truth(each(x))) == 1
        if name == "filter":
            return [x for x in items if _truth(each(x))]
        return [each(x) for x in items]
    if name not in _METHODS:
        raise CelUnsupported(f"method .{name}()")
    receiver = _eval(target, env)
    values = [_eval(a, env) for a in args]
    if name != "size" and not isinstance(receiver, str):
        raise CelError(f".{name}() on {type(receiver).__name__}")
    return _METHODS[name](receiver, *values)


_CACHE: dict[str, tuple] = {}


def compile_rule(rule: str) -> tuple:
    """Parse a rule once (raises :class:`CelUnsupported` for syntax outside the subset)."""
    if rule not in _CACHE:
        _CACHE[rule] = _Parser(rule).parse()
    return _CACHE[rule]


def evaluate(rule: str, self_value: Any) -> bool:
    """True when ``rule`` holds for ``self``; a runtime error counts as not holding (as in the API server)."""
    try:
        return _truth(_eval(compile_rule(rule), {"self": self_value}))
    except CelError:
        return False


def is_transition_rule(rule: str) -> bool:
    return re.search(r"\boldSelf\b", rule) is not None

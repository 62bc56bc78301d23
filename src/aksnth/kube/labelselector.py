"""Label selectors, evaluated without the API server: the kubectl ``-l`` syntax (``a=b,c in (x,y),!d``)
and Kubernetes ``LabelSelector`` objects (``matchLabels`` and ``matchExpressions``, as PodDisruptionBudgets
and node affinity carry them). Pure: plain mappings in, booleans out.

The readiness report matches nodes against ``-selector`` and pods against PodDisruptionBudgets here,
with the API server's rules: ``!=`` and ``notin`` also match objects without the label; ``Gt`` and
``Lt`` compare integers and never match a missing or non-numeric label.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class Op(enum.StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"
    GT = "Gt"
    LT = "Lt"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.op:
            case Op.IN:
                return present and labels[self.key] in self.values
            case Op.NOT_IN:
                return not present or labels[self.key] not in self.values
            case Op.EXISTS:
                return present
            case Op.DOES_NOT_EXIST:
                return not present
            case Op.GT | Op.LT:
                if not present or len(self.values) != 1:
                    return False
                try:
                    have, bound = int(labels[self.key]), int(self.values[0])
                except ValueError:
                    return False
                return have > bound if self.op is Op.GT else have < bound
        raise AssertionError(f"unhandled operator {self.op}")

    def __str__(self) -> str:
        match self.op:
            case Op.IN if len(self.values) == 1:
                return f"{self.key}={self.values[0]}"
            case Op.NOT_IN if len(self.values) == 1:
                return f"{self.key}!={self.values[0]}"
            case Op.IN | Op.NOT_IN:
                return f"{self.key} {self.op.value.lower()} ({','.join(self.values)})"
            case Op.EXISTS:
                return self.key
            case Op.DOES_NOT_EXIST:
                return f"!{self.key}"
            case Op.GT:
                return f"{self.key}>{self.values[0]}"
            case Op.LT:
                return f"{self.key}<{self.values[0]}"
        raise AssertionError(f"unhandled operator {self.op}")


@dataclass(frozen=True, slots=True)
class Selector:
    """Every requirement must hold (an empty selector matches everything)."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


# --- the kubectl syntax ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<op>==|!=|=|>|<|!|\(|\)|,)|(?P<word>[A-Za-z0-9][-A-Za-z0-9_./]*|[A-Za-z0-9]))")
_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def parse_selector(text: str) -> Selector:
    """``text`` in kubectl's ``-l`` syntax; ``ValueError`` saying what is wrong."""
    return _Parser(text).selector()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.position = 0

    def error(self, problem: str) -> ValueError:
        return ValueError(f"selector {self.text!r}: {problem}")

    def peek(self) -> str:
        return self.tokens[self.position] if self.position < len(self.tokens) else ""

    def take(self) -> str:
        if self.position >= len(self.tokens):
            raise self.error("ends too early")
        self.position += 1
        return self.tokens[self.position - 1]

    def selector(self) -> Selector:
        requirements = [self.requirement()] if self.tokens else []
        while self.position < len(self.tokens):
            if self.take() != ",":
                raise self.error("requirements are separated by commas")
            requirements.append(self.requirement())
        return Selector(tuple(requirements))

    def requirement(self) -> Requirement:
        token = self.take()
        if token == "!":
            return Requirement(self.key(self.take()), Op.DOES_NOT_EXIST)
        key = self.key(token)
        following = self.peek()
        if following in ("", ","):
            return Requirement(key, Op.EXISTS)
        self.take()
        if following in ("=", "==", "!="):
            value = "" if self.peek() in ("", ",") else self.take()
            return Requirement(key, Op.NOT_IN if following == "!=" else Op.IN, (self.value(value),))
        if following in (">", "<"):
            bound = self.take()
            if not bound.isdigit():
                raise self.error(f"{key}{following} needs a whole number, got {bound!r}")
            return Requirement(key, Op.GT if following == ">" else Op.LT, (bound,))
        if following in ("in", "notin"):
            return Requirement(key, Op.IN if following == "in" else Op.NOT_IN, self.values())
        raise self.error(f"unexpected {following!r} after {key!r} (use =, !=, in, notin, or the key alone)")

    def values(self) -> tuple[str, ...]:
        if self.take() != "(":
            raise self.error("'in' and 'notin' need values in parentheses, e.g. zone in (1,2)")
        values: list[str] = []
        while True:
            values.append(self.value(self.take()))
            separator = self.take()
            if separator == ")":
                return tuple(values)
            if separator != ",":
                raise self.error("values in parentheses are separated by commas")

    def key(self, token: str) -> str:
        if not _KEY.fullmatch(token):
            raise self.error(f"{token!r} is not a label key")
        return token

    def value(self, token: str) -> str:
        if not _VALUE.fullmatch(token) or len(token) > 63:
            raise self.error(f"{token!r} is not a label value")
        return token


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    index = 0
    stripped = text.rstrip()
    while index < len(stripped):
        match = _TOKEN.match(stripped, index)
        if match is None:
            column = len(stripped[index:]) - len(stripped[index:].lstrip()) + index
            raise ValueError(f"selector {text!r}: unexpected {stripped[column]!r} at character {column + 1}")
        tokens.append(match.group("op") or match.group("word"))
        index = match.end()
    return tokens


# --- LabelSelector objects -----------------------------------------------------------------------------


def from_label_selector(
    match_labels: Mapping[str, str] | None, match_expressions: Iterable[tuple[str, str, Iterable[str]]] = ()
) -> Selector:
    """A ``LabelSelector`` (its ``matchLabels`` and ``(key, operator, values)`` expressions).

    ``ValueError`` for an operator a LabelSelector does not allow (the API server would refuse the
    object; a budget holding one selects nothing, as the disruption controller treats it).
    """
    requirements = [Requirement(key, Op.IN, (value,)) for key, value in sorted((match_labels or {}).items())]
    for key, operator, values in match_expressions:
        try:
            op = Op(operator)
        except ValueError:
            raise ValueError(f"unknown label selector operator {operator!r}") from None
        if op in (Op.GT, Op.LT):
            raise ValueError(f"operator {operator!r} is for node selectors only")
        requirements.append(Requirement(key, op, tuple(values)))
    return Selector(tuple(requirements))


def from_object(label_selector: Mapping[str, object]) -> Selector:
    """A ``LabelSelector`` as the API server sends it (a budget's or a Deployment's ``selector``).

    ``ValueError`` as :func:`from_label_selector`.
    """
    labels = label_selector.get("matchLabels")
    expressions = label_selector.get("matchExpressions")
    return from_label_selector(
        {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else None,
        [
            (str(e.get("key") or ""), str(e.get("operator") or ""), tuple(e.get("values") or ()))
            for e in (expressions if isinstance(expressions, list) else [])
            if isinstance(e, Mapping)
        ],
    )

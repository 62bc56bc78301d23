"""The parsed template: immutable nodes, each with its character offset for error messages."""

from __future__ import annotations

from dataclasses import dataclass

# --- operands (the words of a command) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DotNode:
    pos: int


@dataclass(frozen=True, slots=True)
class NilNode:
    pos: int


@dataclass(frozen=True, slots=True)
class LiteralNode:
    """A string, number, character or bool constant."""

    pos: int
    value: str | int | float | bool
    text: str


@dataclass(frozen=True, slots=True)
class FieldNode:
    """``.A.B.C``: a field chain on dot."""

    pos: int
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VariableNode:
    """``$x`` or ``$x.A.B`` (``$`` alone is the data the template was executed with)."""

    pos: int
    name: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IdentifierNode:
    """A function name."""

    pos: int
    name: str


@dataclass(frozen=True, slots=True)
class ChainNode:
    """``(pipeline).A.B`` or ``func.A``: fields read from the result of another operand."""

    pos: int
    node: Operand
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CommandNode:
    pos: int
    args: tuple[Operand, ...]


@dataclass(frozen=True, slots=True)
class PipeNode:
    """``$a, $b := cmd | cmd``; also a parenthesised pipeline used as an operand."""

    pos: int
    decls: tuple[str, ...]
    is_assign: bool
    cmds: tuple[CommandNode, ...]


Operand = DotNode | NilNode | LiteralNode | FieldNode | VariableNode | IdentifierNode | ChainNode | PipeNode


# --- statements ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextNode:
    pos: int
    text: str


@dataclass(frozen=True, slots=True)
class ActionNode:
    pos: int
    pipe: PipeNode


@dataclass(frozen=True, slots=True)
class IfNode:
    pos: int
    pipe: PipeNode
    body: tuple[Node, ...]
    else_body: tuple[Node, ...] | None


@dataclass(frozen=True, slots=True)
class WithNode:
    pos: int
    pipe: PipeNode
    body: tuple[Node, ...]
    else_body: tuple[Node, ...] | None


@dataclass(frozen=True, slots=True)
class RangeNode:
    pos: int
    pipe: PipeNode
    body: tuple[Node, ...]
    else_body: tuple[Node, ...] | None


@dataclass(frozen=True, slots=True)
class BreakNode:
    pos: int


@dataclass(frozen=True, slots=True)
class ContinueNode:
    pos: int


@dataclass(frozen=True, slots=True)
class TemplateNode:
    """``{{template "name" pipeline}}``."""

    pos: int
    name: str
    pipe: PipeNode | None


Node = TextNode | ActionNode | IfNode | WithNode | RangeNode | BreakNode | ContinueNode | TemplateNode


def describe(node: Operand) -> str:
    """The operand as a template author wrote it, for messages: ``.Event.Foo``, ``$x.A``, ``printf``."""
    if isinstance(node, DotNode):
        return "."
    if isinstance(node, NilNode):
        return "nil"
    if isinstance(node, LiteralNode):
        return node.text
    if isinstance(node, FieldNode):
        return "." + ".".join(node.names)
    if isinstance(node, VariableNode):
        return node.name + "".join("." + n for n in node.names)
    if isinstance(node, IdentifierNode):
        return node.name
    if isinstance(node, ChainNode):
        return describe(node.node) + "".join("." + n for n in node.names)
    return "(pipeline)"

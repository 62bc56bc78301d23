"""Executes a parsed template against data, with Go's semantics for dot, variables and pipelines.

One ``_Render`` per call holds the output, the variable stack and the budgets, so a ``Template``
is immutable and can be rendered concurrently. Errors carry the position of the node that failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from aksnth.errors import TemplateError

from ._funcs import Budget, Function
from ._lexer import Source
from ._limits import TemplateLimits
from ._nodes import (
    ActionNode,
    BreakNode,
    ChainNode,
    ContinueNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    LiteralNode,
    NilNode,
    Node,
    Operand,
    PipeNode,
    RangeNode,
    TemplateNode,
    TextNode,
    VariableNode,
    WithNode,
    describe,
)
from ._parser import ParsedTemplate
from ._printf import format_v, print_value
from ._values import (
    NO_VALUE,
    FuncError,
    Record,
    go_type_name,
    is_list,
    is_map,
    sorted_items,
    truth,
)


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Unset:
    """No value piped in (the first command of a pipeline)."""


_UNSET: Final = _Unset()


def _argument(value: object) -> object:
    """What a function receives: a missing map value becomes nil, as Go's reflection does."""
    return None if value is NO_VALUE else value


class _Render:
    def __init__(
        self,
        source: Source,
        parsed: ParsedTemplate,
        functions: Mapping[str, Function],
        limits: TemplateLimits,
    ) -> None:
        self._src = source
        self._defined = parsed.defined
        self._functions = functions
        self._limits = limits
        self._budget = Budget(limits)
        self._out: list[str] = []
        self._size = 0
        self._vars: list[tuple[str, object]] = []
        self._iterations = 0
        self._depth = 0

    def run(self, root: Sequence[Node], data: object) -> str:
        self._vars = [("$", data)]
        self._walk(root, data)
        return "".join(self._out)

    def _error(self, message: str, pos: int) -> TemplateError:
        return self._src.error(message, pos)

    def _write(self, text: str, pos: int) -> None:
        self._size += len(text)
        if self._size > self._limits.max_output_chars:
            raise self._error(f"output is longer than {self._limits.max_output_chars} characters", pos)
        self._out.append(text)

    # --- statements ------------------------------------------------------------------------------------

    def _walk(self, nodes: Iterable[Node], dot: object) -> None:
        for node in nodes:
            if isinstance(node, TextNode):
                self._write(node.text, node.pos)
            elif isinstance(node, ActionNode):
                value = self._pipeline(node.pipe, dot)
                if not node.pipe.decls:
                    try:
                        text = print_value(value)
                    except FuncError as exc:
                        raise self._error(str(exc), node.pos) from None
                    self._write(text, node.pos)
            elif isinstance(node, IfNode | WithNode):
                self._if_or_with(node, dot)
            elif isinstance(node, RangeNode):
                self._range(node, dot)
            elif isinstance(node, BreakNode):
                raise _Break
            elif isinstance(node, ContinueNode):
                raise _Continue
            else:
                self._template(node, dot)

    def _truth(self, value: object, pos: int) -> bool:
        try:
            return truth(value)
        except FuncError as exc:
            raise self._error(str(exc), pos) from None

    def _if_or_with(self, node: IfNode | WithNode, dot: object) -> None:
        mark = len(self._vars)
        value = self._pipeline(node.pipe, dot)
        if self._truth(value, node.pos):
            self._walk(node.body, value if isinstance(node, WithNode) else dot)
        elif node.else_body is not None:
            self._walk(node.else_body, dot)
        del self._vars[mark:]

    def _range_items(self, node: RangeNode, value: object) -> Iterable[tuple[object, object]]:
        if value is None or value is NO_VALUE:
            return ()
        if is_list(value):
            assert isinstance(value, Sequence)
            return enumerate(value)
        if is_map(value):
            assert isinstance(value, Mapping)
            return sorted_items(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if len(node.pipe.decls) > 1:
                raise self._error(f"can't use {value} to iterate over more than one variable", node.pos)
            return ((i, i) for i in range(value))
        try:
            shown = f"{format_v(value)} ({go_type_name(value)})"
        except FuncError:
            shown = go_type_name(value)
        raise self._error(f"range can't iterate over {shown}", node.pos)

    def _range(self, node: RangeNode, dot: object) -> None:
        mark = len(self._vars)
        value = self._commands(node.pipe, dot)
        decls = node.pipe.decls
        ran = False
        for key, element in self._range_items(node, value):
            ran = True
            self._iterations += 1
            if self._iterations > self._limits.max_range_iterations:
                raise self._error(
                    f"range: more than {self._limits.max_range_iterations} iterations in one render", node.pos
                )
            inner = len(self._vars)
            bound = (element,) if len(decls) == 1 else (key, element)
            for name, bound_value in zip(decls, bound, strict=False):
                if node.pipe.is_assign:
                    self._set_var(name, bound_value)
                else:
                    self._vars.append((name, bound_value))
            try:
                self._walk(node.body, element)
            except _Break:
                break
            except _Continue:
                pass
            finally:
                del self._vars[inner:]
        if not ran and node.else_body is not None:
            self._walk(node.else_body, dot)
        del self._vars[mark:]

    def _template(self, node: TemplateNode, dot: object) -> None:
        value = self._pipeline(node.pipe, dot) if node.pipe is not None else NO_VALUE
        if self._depth >= self._limits.max_template_depth:
            raise self._error(
                f"exceeded maximum template depth ({self._limits.max_template_depth}) calling {node.name}",
                node.pos,
            )
        saved = self._vars
        self._vars = [("$", value)]  # no dynamic scoping: a called template sees only its argument
        self._depth += 1
        try:
            self._walk(self._defined[node.name], value)
        finally:
            self._vars = saved
            self._depth -= 1

    # --- pipelines -------------------------------------------------------------------------------------

    def _commands(self, pipe: PipeNode, dot: object) -> object:
        value: object = _UNSET
        for cmd in pipe.cmds:
            first = cmd.args[0]
            if isinstance(first, IdentifierNode):
                value = self._call(first, cmd.args[1:], dot, value)
            else:
                value = self._operand(first, dot)  # the parser allows no arguments and no piped value here
        return value

    def _pipeline(self, pipe: PipeNode, dot: object) -> object:
        value = self._commands(pipe, dot)
        for name in pipe.decls:
            if pipe.is_assign:
                self._set_var(name, value)
            else:
                self._vars.append((name, value))
        return value

    def _variable(self, node: VariableNode) -> object:
        for name, value in reversed(self._vars):
            if name == node.name:
                return value
        raise self._error(f"undefined variable {node.name}", node.pos)

    def _set_var(self, name: str, value: object) -> None:
        for i in range(len(self._vars) - 1, -1, -1):
            if self._vars[i][0] == name:
                self._vars[i] = (name, value)
                return
        raise TemplateError(f"undefined variable {name}", name=self._src.name)

    def _operand(self, node: Operand, dot: object) -> object:
        if isinstance(node, DotNode):
            return dot
        if isinstance(node, NilNode):
            return None
        if isinstance(node, LiteralNode):
            return node.value
        if isinstance(node, FieldNode):
            return self._fields(dot, node.names, node)
        if isinstance(node, VariableNode):
            return self._fields(self._variable(node), node.names, node)
        if isinstance(node, IdentifierNode):
            return self._call(node, (), dot, _UNSET)
        if isinstance(node, ChainNode):
            return self._fields(self._operand(node.node, dot), node.names, node)
        return self._pipeline(node, dot)

    def _fields(self, receiver: object, names: Sequence[str], node: Operand) -> object:
        for name in names:
            receiver = self._field(receiver, name, node)
        return receiver

    def _field(self, receiver: object, name: str, node: Operand) -> object:
        if receiver is NO_VALUE:
            return NO_VALUE  # Go: a field of a missing map entry is no value, not an error
        if isinstance(receiver, Record):
            if name in receiver:
                return receiver[name]
            where = f"{receiver.type_name} ({describe(node)})"
            raise self._error(f"can't evaluate field {name} in type {where}{_hint(name, receiver)}", node.pos)
        if is_map(receiver):
            assert isinstance(receiver, Mapping)
            return receiver.get(name, NO_VALUE)
        if receiver is None:
            raise self._error(
                f"nil pointer evaluating {describe(node)}: the value before .{name} is nil", node.pos
            )
        raise self._error(
            f"can't evaluate field {name} in type {go_type_name(receiver)} ({describe(node)})", node.pos
        )

    def _call(self, ident: IdentifierNode, args: Sequence[Operand], dot: object, final: object) -> object:
        function = self._functions[ident.name]
        if function.call is None:
            return self._and_or(ident.name, args, dot, final, ident.pos)
        values = [_argument(self._operand(arg, dot)) for arg in args]
        if final is not _UNSET:
            values.append(_argument(final))
        try:
            result = function.call(self._budget, values)
            if isinstance(result, str):
                self._budget.charge(result)
        except FuncError as exc:
            raise self._error(f"error calling {ident.name}: {exc}", ident.pos) from None
        return result

    def _and_or(self, name: str, args: Sequence[Operand], dot: object, final: object, pos: int) -> object:
        """Go 1.18+: ``and`` returns the first empty argument or the last; ``or`` the first non-empty one."""
        want = name == "or"
        value: object = None
        for arg in args:
            value = self._operand(arg, dot)
            if self._truth(value, pos) == want:
                return value
        return value if final is _UNSET else final


def _hint(name: str, record: Record) -> str:
    import difflib  # noqa: PLC0415 - only for a mistake's message

    close = difflib.get_close_matches(name, list(record), n=1)
    if close:
        return f"; did you mean .{close[0]}?"
    return "; fields: " + ", ".join(record)


def render(
    source: Source,
    parsed: ParsedTemplate,
    data: object,
    *,
    functions: Mapping[str, Function],
    limits: TemplateLimits,
) -> str:
    try:
        return _Render(source, parsed, functions, limits).run(parsed.root, data)
    except RecursionError:
        raise TemplateError("templates call each other too deeply", name=source.name) from None

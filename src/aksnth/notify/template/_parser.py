"""Go text/template's grammar, parsed into ``_nodes``; every mistake found here is a compile error.

Beyond what Go's parser checks, the things Go only notices while executing but that can be known from
the text alone are reported here too (a wrong number of arguments for a function, a field given
arguments, a value piped into something that is not a function, a call of an undefined template), so
that a broken template is refused at start-up with its position, never half-way through a render.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from aksnth.errors import TemplateError

from ._funcs import Function
from ._lexer import Kind, Lexer, Source, Token
from ._limits import TemplateLimits
from ._nodes import (
    ActionNode,
    BreakNode,
    ChainNode,
    CommandNode,
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
from ._values import go_quote


@dataclass(frozen=True, slots=True)
class _End:
    pos: int


@dataclass(frozen=True, slots=True)
class _Else:
    pos: int
    chained: str | None  # "if" / "with" for {{else if}} / {{else with}}


@dataclass(frozen=True, slots=True)
class ParsedTemplate:
    root: tuple[Node, ...]
    defined: Mapping[str, tuple[Node, ...]]


def _show(token: Token) -> str:
    if token.kind is Kind.EOF:
        return "end of template"
    if token.kind in (Kind.KEYWORD, Kind.IDENTIFIER):
        return f"<{token.text}>"
    if token.kind is Kind.FIELD:
        return f"<.{token.text}>"
    if token.kind in (Kind.STRING, Kind.NUMBER, Kind.BOOL, Kind.NIL, Kind.VARIABLE):
        return token.text
    return f"'{token.text}'"


class Parser:
    def __init__(self, source: Source, *, functions: Mapping[str, Function], limits: TemplateLimits):
        self._src = source
        self._functions = functions
        self._limits = limits
        self._tokens: Iterator[Token] = Lexer(source).tokens()
        self._pending: list[Token] = []
        self._vars: list[str] = ["$"]
        self._range_depth = 0
        self._nesting = 0
        self._defined: dict[str, tuple[Node, ...]] = {}
        self._calls: list[tuple[str, int]] = []

    # --- token access ----------------------------------------------------------------------------------

    def _next(self) -> Token:
        if self._pending:
            return self._pending.pop()
        return next(self._tokens)

    def _peek(self, ahead: int = 0) -> Token:
        while len(self._pending) <= ahead:
            self._pending.insert(0, next(self._tokens))
        return self._pending[-1 - ahead]

    def _unread(self, token: Token) -> None:
        self._pending.append(token)

    def _error(self, message: str, pos: int) -> TemplateError:
        return self._src.error(message, pos)

    def _expect_right(self, context: str) -> None:
        token = self._next()
        if token.kind is not Kind.RIGHT:
            raise self._error(f"unexpected {_show(token)} in {context}", token.pos)

    def _enter(self, pos: int) -> None:
        self._nesting += 1
        if self._nesting > self._limits.max_nesting:
            raise self._error(f"template nests too deeply (more than {self._limits.max_nesting} levels)", pos)

    def _leave(self) -> None:
        self._nesting -= 1

    # --- structure -------------------------------------------------------------------------------------

    def parse(self) -> ParsedTemplate:
        if len(self._src.text) > self._limits.max_source_chars:
            raise TemplateError(
                f"template is longer than {self._limits.max_source_chars} characters", name=self._src.name
            )
        root: list[Node] = []
        while self._peek().kind is not Kind.EOF:
            if (
                self._peek().kind is Kind.LEFT
                and self._peek(1).kind is Kind.KEYWORD
                and self._peek(1).text == "define"
            ):
                self._define()
                continue
            node = self._text_or_action()
            if isinstance(node, _End):
                raise self._error(
                    "unexpected {{end}}: there is no {{if}}, {{range}} or {{with}} to close", node.pos
                )
            if isinstance(node, _Else):
                raise self._error("unexpected {{else}} outside {{if}}, {{range}} or {{with}}", node.pos)
            root.append(node)
        for name, pos in self._calls:
            if name not in self._defined:
                raise self._error(f"no such template {go_quote(name)}", pos)
        return ParsedTemplate(root=tuple(root), defined=dict(self._defined))

    def _text_or_action(self) -> Node | _End | _Else:
        token = self._next()
        if token.kind is Kind.TEXT:
            return TextNode(token.pos, token.text)
        if token.kind is Kind.LEFT:
            return self._action(token)
        raise self._error(f"unexpected {_show(token)} in input", token.pos)

    def _item_list(self, opener: Token) -> tuple[tuple[Node, ...], _End | _Else]:
        """Nodes up to the {{else}} or {{end}} that belongs to ``opener``; variables die with the list."""
        mark = len(self._vars)
        nodes: list[Node] = []
        while True:
            if self._peek().kind is Kind.EOF:
                raise self._error(
                    f"unclosed {{{{{opener.text}}}}}: missing {{{{end}}}} before the end of the template",
                    opener.pos,
                )
            node = self._text_or_action()
            if isinstance(node, _End | _Else):
                del self._vars[mark:]
                return tuple(nodes), node
            nodes.append(node)

    def _action(self, left: Token) -> Node | _End | _Else:
        token = self._peek()
        if token.kind is not Kind.KEYWORD:
            return ActionNode(token.pos, self._pipeline("command", Kind.RIGHT))
        self._next()
        word = token.text
        if word == "end":
            self._expect_right("{{end}}")
            return _End(token.pos)
        if word == "else":
            following = self._peek()
            if following.kind is Kind.KEYWORD and following.text in ("if", "with"):
                return _Else(token.pos, following.text)
            self._expect_right("{{else}}")
            return _Else(token.pos, None)
        if word in ("if", "with", "range"):
            return self._control(token)
        if word in ("break", "continue"):
            if self._range_depth == 0:
                raise self._error(f"{{{{{word}}}}} outside {{{{range}}}}", token.pos)
            self._expect_right(f"{{{{{word}}}}}")
            return BreakNode(token.pos) if word == "break" else ContinueNode(token.pos)
        if word == "template":
            return self._template_call(token)
        if word == "block":
            return self._block(token)
        raise self._error(f"{{{{{word}}}}} is only allowed at the top level of the template", token.pos)

    def _control(self, opener: Token) -> Node:
        context = opener.text
        self._enter(opener.pos)
        mark = len(self._vars)
        pipe = self._pipeline(context, Kind.RIGHT)
        if context == "range":
            self._range_depth += 1
        body, marker = self._item_list(opener)
        if context == "range":
            self._range_depth -= 1
        else_body: tuple[Node, ...] | None = None
        if isinstance(marker, _Else):
            if marker.chained is not None:
                chained = self._next()
                if marker.chained != context:
                    raise self._error(
                        f"{{{{else {marker.chained}}}}} cannot follow {{{{{context}}}}}", chained.pos
                    )
                else_body = (self._control(chained),)  # its {{end}} closes this one too, as in Go
            else:
                else_body, closing = self._item_list(opener)
                if isinstance(closing, _Else):
                    raise self._error(
                        f"expected {{{{end}}}} to close {{{{{context}}}}}; found {{{{else}}}}", closing.pos
                    )
        del self._vars[mark:]
        self._leave()
        if context == "if":
            return IfNode(opener.pos, pipe, body, else_body)
        if context == "with":
            return WithNode(opener.pos, pipe, body, else_body)
        return RangeNode(opener.pos, pipe, body, else_body)

    def _template_name(self, keyword: Token) -> Token:
        token = self._next()
        if token.kind is not Kind.STRING or not isinstance(token.value, str):
            raise self._error(f"{{{{{keyword.text}}}}} needs a template name in quotes", token.pos)
        return token

    def _template_call(self, keyword: Token) -> Node:
        name = self._template_name(keyword)
        pipe = None
        if self._peek().kind is Kind.RIGHT:
            self._next()
        else:
            pipe = self._pipeline("template", Kind.RIGHT)
        self._calls.append((str(name.value), name.pos))
        return TemplateNode(keyword.pos, str(name.value), pipe)

    def _definition_body(self, keyword: Token, name: Token) -> None:
        saved_vars, saved_range = self._vars, self._range_depth
        self._vars, self._range_depth = ["$"], 0
        self._enter(keyword.pos)
        body, marker = self._item_list(keyword)
        if isinstance(marker, _Else):
            raise self._error(f"unexpected {{{{else}}}} in {{{{{keyword.text}}}}}", marker.pos)
        self._leave()
        self._vars, self._range_depth = saved_vars, saved_range
        if str(name.value) in self._defined:
            raise self._error(f"template {name.text} is defined twice", name.pos)
        self._defined[str(name.value)] = body

    def _define(self) -> None:
        self._next()  # {{
        keyword = self._next()
        name = self._template_name(keyword)
        self._expect_right("{{define}}")
        self._definition_body(keyword, name)

    def _block(self, keyword: Token) -> Node:
        name = self._template_name(keyword)
        pipe = self._pipeline("block", Kind.RIGHT)
        self._definition_body(keyword, name)
        self._calls.append((str(name.value), name.pos))
        return TemplateNode(keyword.pos, str(name.value), pipe)

    # --- pipelines -------------------------------------------------------------------------------------

    def _pipeline(self, context: str, end: Kind) -> PipeNode:
        start = self._peek()
        decls, is_assign = self._declarations(context)
        cmds: list[CommandNode] = []
        while True:
            token = self._peek()
            if token.kind is end:
                self._next()
                break
            cmd, piped = self._command(end)
            cmds.append(cmd)
            if piped and self._peek().kind is end:
                raise self._error("missing command after '|'", self._peek().pos)
        if not cmds:
            raise self._error(f"missing value for {context}", start.pos)
        self._check_stages(cmds)
        for name in decls:
            if is_assign:
                self._use_var(name, start.pos)
            else:
                self._vars.append(name)
        return PipeNode(start.pos, tuple(decls), is_assign, tuple(cmds))

    def _declarations(self, context: str) -> tuple[list[str], bool]:
        first = self._peek()
        if first.kind is not Kind.VARIABLE:
            return [], False
        variable = self._next()
        after = self._peek()
        if after.kind in (Kind.DECLARE, Kind.ASSIGN):
            self._next()
            return [variable.text], after.kind is Kind.ASSIGN
        if after.kind is Kind.COMMA:
            self._next()
            second = self._next()
            if context != "range":
                raise self._error(f"too many declarations in {context}", after.pos)
            if second.kind is not Kind.VARIABLE:
                raise self._error("range can only initialize variables", second.pos)
            op = self._next()
            if op.kind is Kind.COMMA:
                raise self._error("too many declarations in range", op.pos)
            if op.kind not in (Kind.DECLARE, Kind.ASSIGN):
                raise self._error(f"expected := or = after {second.text}", op.pos)
            return [variable.text, second.text], op.kind is Kind.ASSIGN
        self._unread(variable)
        return [], False

    def _use_var(self, name: str, pos: int) -> None:
        if name not in self._vars:
            raise self._error(f"undefined variable {go_quote(name)}", pos)

    def _command(self, end: Kind) -> tuple[CommandNode, bool]:
        args: list[Operand] = []
        start = self._peek()
        piped = False
        while True:
            operand = self._operand()
            if operand is not None:
                args.append(operand)
            token = self._peek()
            if token.kind is Kind.PIPE:
                self._next()
                piped = True
                break
            if token.kind is end:
                break
            if operand is None:
                raise self._error(f"unexpected {_show(token)} in command", token.pos)
            if not token.spaced:
                raise self._error(
                    f"unexpected {_show(token)} in operand: separate arguments with spaces", token.pos
                )
        if not args:
            raise self._error("missing command", start.pos)
        for arg in args[1:]:
            if isinstance(arg, IdentifierNode):
                self._check_arity(arg, 0)  # a function as an argument is called without arguments
        return CommandNode(args[0].pos, tuple(args)), piped

    def _operand(self) -> Operand | None:
        node = self._term()
        if node is None:
            return None
        names: list[str] = []
        while self._peek().kind is Kind.FIELD and not self._peek().spaced:
            names.append(self._next().text)
        if not names:
            return node
        if isinstance(node, FieldNode):
            return FieldNode(node.pos, node.names + tuple(names))
        if isinstance(node, VariableNode):
            return VariableNode(node.pos, node.name, node.names + tuple(names))
        if isinstance(node, IdentifierNode):
            self._check_arity(node, 0)  # func.Field calls func without arguments
        if isinstance(node, PipeNode | IdentifierNode | ChainNode):
            return ChainNode(node.pos, node, tuple(names))
        raise self._error(f"unexpected . after term {describe(node)}", node.pos)

    def _term(self) -> Operand | None:
        token = self._peek()
        kind = token.kind
        if kind is Kind.IDENTIFIER:
            self._next()
            if token.text not in self._functions:
                raise self._error(f"function {go_quote(token.text)} not defined", token.pos)
            return IdentifierNode(token.pos, token.text)
        if kind is Kind.DOT:
            self._next()
            return DotNode(token.pos)
        if kind is Kind.NIL:
            self._next()
            return NilNode(token.pos)
        if kind is Kind.VARIABLE:
            self._next()
            self._use_var(token.text, token.pos)
            return VariableNode(token.pos, token.text)
        if kind is Kind.FIELD:
            self._next()
            return FieldNode(token.pos, (token.text,))
        if kind in (Kind.BOOL, Kind.NUMBER, Kind.STRING):
            self._next()
            assert isinstance(token.value, str | int | float | bool)
            return LiteralNode(token.pos, token.value, token.text)
        if kind is Kind.LPAREN:
            self._next()
            self._enter(token.pos)
            pipe = self._pipeline("parenthesized pipeline", Kind.RPAREN)
            self._leave()
            return PipeNode(token.pos, pipe.decls, pipe.is_assign, pipe.cmds)
        return None

    def _check_arity(self, node: IdentifierNode, count: int) -> None:
        function = self._functions[node.name]
        if count < function.min_args or (function.max_args is not None and count > function.max_args):
            if function.max_args is None:
                want = f"at least {function.min_args}"
            elif function.min_args == function.max_args:
                want = str(function.min_args)
            else:
                want = f"{function.min_args} to {function.max_args}"
            raise self._error(
                f"wrong number of args for {node.name}: want {want} got {count} (usage: {function.usage})",
                node.pos,
            )

    def _check_stages(self, cmds: list[CommandNode]) -> None:
        for stage, cmd in enumerate(cmds):
            first = cmd.args[0]
            piped = 1 if stage > 0 else 0
            if isinstance(first, IdentifierNode):
                self._check_arity(first, len(cmd.args) - 1 + piped)
                continue
            if isinstance(first, NilNode):
                raise self._error("nil is not a command", first.pos)
            if stage > 0:
                if isinstance(first, LiteralNode | DotNode):
                    raise self._error(f"non executable command in pipeline stage {stage + 1}", first.pos)
                raise self._error(
                    f"cannot pipe into {describe(first)}: only a function takes the piped value", first.pos
                )
            if len(cmd.args) > 1:
                if isinstance(first, FieldNode | ChainNode) or (
                    isinstance(first, VariableNode) and first.names
                ):
                    raise self._error(
                        f"{describe(first)} has arguments but is a field, not a function", first.pos
                    )
                raise self._error(f"can't give argument to non-function {describe(first)}", first.pos)

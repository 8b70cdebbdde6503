"""The simulator's reading of AtHoc criteria.

Parses the ``Criteria`` parameter of a user search (AtHoc Query Language, as
far as bobosync uses it) and compiles it into a test of one user's
attributes. Pure functions: text in, predicates out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

TEXT_OPERATORS = ("eq", "ne", "sw", "ew", "co", "nc")
DATE_OPERATORS = ("lt", "gt", "pr", "npr")
VALUELESS_OPERATORS = ("pr", "npr")


class CriteriaError(ValueError):
    """A Criteria string the simulator cannot read; answered with 400."""


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "string", "(", ")" or "end"
    text: str
    position: int


@dataclass(frozen=True)
class Comparison:
    attribute: str
    operator: str  # lower case
    value: str | None  # None for pr / npr


@dataclass(frozen=True)
class Combination:
    operator: str  # "and" or "or"
    operands: tuple[CriteriaNode, ...]


CriteriaNode = Comparison | Combination
Predicate = Callable[[Mapping[str, str | None]], bool]


def tokenize_criteria(text: str) -> list[Token]:
    """Split a Criteria string into words, quoted values and parentheses."""
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char.isspace():
            position += 1
        elif char in "()":
            tokens.append(Token(char, char, position))
            position += 1
        elif char == "'":
            value, end = _read_quoted(text, position)
            tokens.append(Token("string", value, position))
            position = end
        else:
            end = position
            while end < len(text) and not (text[end].isspace() or text[end] in "()'"):
                end += 1
            tokens.append(Token("word", text[position:end], position))
            position = end
    tokens.append(Token("end", "", len(text)))
    return tokens


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted value from ``start``; ``''`` stands for one quote."""
    characters: list[str] = []
    position = start + 1
    while position < len(text):
        if text[position] != "'":
            characters.append(text[position])
            position += 1
        elif text.startswith("''", position):
            characters.append("'")
            position += 2
        else:
            return "".join(characters), position + 1
    raise CriteriaError(f"unterminated quoted value at position {start}")


def parse_criteria(text: str) -> CriteriaNode | None:
    """Parse a Criteria string; None for an empty one (all users).

    ``and`` binds tighter than ``or``; raises CriteriaError naming the place.
    """
    tokens = tokenize_criteria(text)
    if tokens[0].kind == "end":
        return None
    parser = _CriteriaParser(tokens)
    node = parser.parse_or()
    parser.expect_end()
    return node


class _CriteriaParser:
    """Recursive descent over the tokens of one Criteria string."""

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0

    def parse_or(self) -> CriteriaNode:
        return self._parse_chain("or", self.parse_and)

    def parse_and(self) -> CriteriaNode:
        return self._parse_chain("and", self.parse_factor)

    def parse_factor(self) -> CriteriaNode:
        token = self._next()
        if token.kind == "(":
            node = self.parse_or()
            self._expect(")", "')'")
            return node
        if token.kind != "word" or _is_keyword(token):
            raise _unexpected(token, "an attribute name or '('")
        return self._parse_comparison(token.text)

    def expect_end(self) -> None:
        self._expect("end", "'and', 'or' or the end")

    def _parse_chain(
        self, keyword: str, parse_operand: Callable[[], CriteriaNode]
    ) -> CriteriaNode:
        operands = [parse_operand()]
        while self._peek_keyword() == keyword:
            self._index += 1
            operands.append(parse_operand())
        if len(operands) == 1:
            return operands[0]
        return Combination(keyword, tuple(operands))

    def _parse_comparison(self, attribute: str) -> Comparison:
        token = self._next()
        operator = token.text.lower()
        if token.kind != "word" or operator not in TEXT_OPERATORS + DATE_OPERATORS:
            raise _unexpected(token, f"an operator after {attribute!r}")
        if operator in VALUELESS_OPERATORS:
            return Comparison(attribute, operator, None)
        value = self._expect("string", f"a quoted value after {operator!r}")
        return Comparison(attribute, operator, value.text)

    def _expect(self, kind: str, description: str) -> Token:
        token = self._next()
        if token.kind != kind:
            raise _unexpected(token, description)
        return token

    def _next(self) -> Token:
        token = self._tokens[self._index]
        if token.kind != "end":
            self._index += 1
        return token

    def _peek_keyword(self) -> str:
        token = self._tokens[self._index]
        return token.text.lower() if _is_keyword(token) else ""


def _is_keyword(token: Token) -> bool:
    return token.kind == "word" and token.text.lower() in ("and", "or")


def _unexpected(token: Token, expected: str) -> CriteriaError:
    found = "the end" if token.kind == "end" else repr(token.text)
    return CriteriaError(
        f"expected {expected} at position {token.position}, found {found}"
    )


def compile_criteria(
    node: CriteriaNode | None,
    *,
    known_attributes: Collection[str],
    date_fields: Collection[str],
    datetime_format: str,
) -> Predicate:
    """Turn a parsed Criteria into a test of one user's attributes.

    Raises CriteriaError for an unknown attribute, an operator that does not
    fit the attribute's type, or a date that does not parse.
    """
    if node is None:
        return lambda attributes: True
    if isinstance(node, Combination):
        parts = [
            compile_criteria(
                operand,
                known_attributes=known_attributes,
                date_fields=date_fields,
                datetime_format=datetime_format,
            )
            for operand in node.operands
        ]
        combine = all if node.operator == "and" else any
        return lambda attributes: combine(part(attributes) for part in parts)
    if node.attribute not in known_attributes:
        raise CriteriaError(f"unknown attribute {node.attribute!r}")
    if node.operator in VALUELESS_OPERATORS:
        return _compile_presence_test(node)
    if node.attribute in date_fields:
        return _compile_date_test(node, datetime_format)
    return _compile_text_test(node)


def _compile_presence_test(node: Comparison) -> Predicate:
    name = node.attribute
    is_present_wanted = node.operator == "pr"
    return lambda attributes: bool(attributes.get(name)) == is_present_wanted


def _compile_date_test(node: Comparison, datetime_format: str) -> Predicate:
    name = node.attribute
    if node.operator not in DATE_OPERATORS:
        raise CriteriaError(
            f"operator {node.operator!r} does not apply to the Date Time "
            f"attribute {name!r}; use lt, gt, pr or npr"
        )
    limit = parse_date_value(node.value or "", datetime_format)
    if limit is None:
        raise CriteriaError(
            f"{node.value!r} is not a date in the format {datetime_format}"
        )
    is_before = node.operator == "lt"

    def test(attributes: Mapping[str, str | None]) -> bool:
        value = parse_date_value(attributes.get(name) or "", datetime_format)
        if value is None:
            return False
        return value < limit if is_before else value > limit

    return test


def _compile_text_test(node: Comparison) -> Predicate:
    name = node.attribute
    if node.operator not in TEXT_OPERATORS:
        raise CriteriaError(
            f"operator {node.operator!r} does not apply to the text attribute {name!r}"
        )
    wanted = (node.value or "").casefold()
    compare = _TEXT_TESTS[node.operator]
    return lambda attributes: compare((attributes.get(name) or "").casefold(), wanted)


# Text comparisons ignore case, as the SQL Server collation behind AtHoc does.
_TEXT_TESTS: dict[str, Callable[[str, str], bool]] = {
    "eq": lambda value, wanted: value == wanted,
    "ne": lambda value, wanted: value != wanted,
    "sw": lambda value, wanted: value.startswith(wanted),
    "ew": lambda value, wanted: value.endswith(wanted),
    "co": lambda value, wanted: wanted in value,
    "nc": lambda value, wanted: wanted not in value,
}


def parse_date_value(text: str, datetime_format: str) -> datetime | None:
    """A Date Time value in the organisation's format, or None if it is not."""
    try:
        return datetime.strptime(text, datetime_format)
    except ValueError:
        return None

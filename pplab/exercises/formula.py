"""Short formulas a learner types, read safely and evaluated on fresh values.

``(p-1)/(m+p-1)`` or ``(p-1)*max(t_f+t_i-t_w, t_f, t_i)``: numbers, the variables a question
names, ``+ - * / **``, parentheses, and ``min``, ``max``, ``abs``, ``ceil``, ``floor``. The
text is parsed with Python's ``ast`` and only those nodes are accepted; evaluation walks the
tree itself, so no name, attribute or call outside that list can be reached, and powers are
bounded so that ``9**9**9`` is refused instead of computed. Names are read case-insensitively
(``T_F`` is ``t_f``).

    python -c "import pplab.exercises.formula as x; print(x.parse_formula('p/m', 'pm')(p=4, m=8))"
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from pplab.limits import MAX_FORMULA_CHARS, MAX_FORMULA_MAGNITUDE, MAX_FORMULA_POWER

_FUNCTIONS: dict[str, Callable[..., float]] = {"min": min, "max": max, "abs": abs,
                                              "ceil": math.ceil, "floor": math.floor}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class FormulaError(ValueError):
    """A formula that cannot be read (the ``BadAnswer`` of a formula part)."""


class Formula:
    """A parsed formula; call it with the variables as keywords: ``f(p=4, m=8)``."""

    def __init__(self, text: str, tree: ast.expr, variables: tuple[str, ...]):
        self.text = text
        self.variables = variables
        self._tree = tree
        self.__name__ = "your formula"
        # the variables it names (lower case), so a judge can say one is not in the question
        self.names = frozenset(node.id.lower() for node in ast.walk(tree)
                               if isinstance(node, ast.Name) and node.id.lower() not in _FUNCTIONS)

    def __call__(self, **values: float) -> float:
        return _evaluate(self._tree, {k.lower(): float(v) for k, v in values.items()})

    def __repr__(self) -> str:
        return f"Formula({self.text!r})"


def parse_formula(text: str, variables: tuple[str, ...]) -> Formula:
    """Read ``text`` as a formula in ``variables``; FormulaError naming what is not allowed."""
    if len(text) > MAX_FORMULA_CHARS:
        raise FormulaError(f"a formula here is at most {MAX_FORMULA_CHARS} characters")
    if "^" in text:
        raise FormulaError("write powers with **, not ^")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise FormulaError(f"cannot read {text!r} as a formula (check the parentheses and "
                           f"that every product has its *, as in 2*p)") from None
    allowed = {v.lower() for v in variables}
    for node in ast.walk(tree):
        _check_node(node, allowed, variables)
    return Formula(text.strip(), tree, variables)


def _check_node(node: ast.AST, allowed: set[str], variables: tuple[str, ...]) -> None:
    names = ", ".join(variables)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise FormulaError(f"{node.value!r} is not a number")
        if not math.isfinite(node.value) or abs(node.value) > MAX_FORMULA_MAGNITUDE:
            raise FormulaError(f"{node.value!r} is too large a number for this formula")
    elif isinstance(node, ast.Name):
        name = node.id.lower()
        if name not in allowed and name not in _FUNCTIONS:
            raise FormulaError(f"unknown name {node.id!r}: use {names}")
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id.lower() not in _FUNCTIONS:
            raise FormulaError(f"only {', '.join(_FUNCTIONS)} can be called in a formula")
        if node.keywords or not node.args or len(node.args) > 8 or (
                node.func.id.lower() in ("ceil", "floor", "abs") and len(node.args) > 1):
            raise FormulaError(f"{node.func.id}(...) takes one to eight values")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise FormulaError("use + - * / ** only")
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise FormulaError("use + - * / ** only")
    elif not isinstance(node, ast.operator | ast.unaryop | ast.Load):
        raise FormulaError(f"a formula holds numbers, {names}, operators and "
                           f"{', '.join(_FUNCTIONS)}; "
                           f"not {type(node).__name__.lower()}")


def _evaluate(node: ast.expr, values: dict[str, float]) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return values[node.id.lower()]
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, values))
    if isinstance(node, ast.Call):
        return float(_FUNCTIONS[node.func.id.lower()](*(_evaluate(a, values) for a in node.args)))
    left, right = _evaluate(node.left, values), _evaluate(node.right, values)
    if isinstance(node.op, ast.Pow) and (abs(right) > MAX_FORMULA_POWER
                                         or abs(left) > MAX_FORMULA_MAGNITUDE):
        raise ArithmeticError(f"a power with exponent above {MAX_FORMULA_POWER} or base above "
                              f"{MAX_FORMULA_MAGNITUDE:g}")
    result = _BINARY[type(node.op)](left, right)
    if isinstance(result, complex) or not math.isfinite(result):
        raise ArithmeticError("a value that is not a real number")
    return result

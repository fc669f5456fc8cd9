"""A safe evaluator for `LambdaLR` factor expressions such as ``0.5 ** epoch``.

The expression is parsed with :mod:`ast` and walked node by node; only numbers, the name
``epoch``, ``+ - * / ** %``, unary minus/plus and a few math functions are allowed. Nothing
ever reaches ``eval`` or ``exec``. Sizes are bounded so a hostile expression cannot make
the process spend unbounded time or memory (``9 ** 9 ** 9``).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

MAX_LENGTH = 200  # characters
MAX_NODES = 60  # AST nodes
MAX_MAGNITUDE = 1e300  # any intermediate beyond this is "not finite"

FUNCTIONS: dict[str, Callable[..., float]] = {
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "cos": math.cos,
    "sin": math.sin,
    "abs": abs,
    "min": min,
    "max": max,
    "floor": math.floor,
    "ceil": math.ceil,
}
CONSTANTS = {"pi": math.pi, "e": math.e}
# The names a script spells ``math.NAME`` (the rest of FUNCTIONS are Python builtins)
MATH_NAMES = frozenset(
    {name for name, f in FUNCTIONS.items() if getattr(math, name, None) is f} | set(CONSTANTS)
)
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
ACCEPTED = (
    "numbers, `epoch`, + - * / ** % //, parentheses and " + ", ".join(sorted(FUNCTIONS)) + ", pi, e"
)


def parse_factor(expression: str) -> Callable[[int], float]:
    """Returns a function ``epoch -> factor`` for a plain arithmetic expression in ``epoch``.

    Args:
        expression: e.g. ``"0.5 ** epoch"`` or ``"1 / (1 + epoch / 10)"``.

    Raises:
        ValueError: naming the problem (syntax error with its column, an unknown name,
            attribute access, a call to something not allowed, or a too long expression).

    >>> parse_factor("0.5 ** epoch")(2)
    0.25
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("lambda expression is empty; write a factor in `epoch`, e.g. 0.5 ** epoch")
    text = expression.strip()
    if len(text) > MAX_LENGTH:
        raise ValueError(
            f"lambda expression is {len(text)} characters long; at most {MAX_LENGTH} accepted"
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        col = err.offset or 1
        raise ValueError(
            f"lambda expression {text!r}: syntax error at column {col}: {err.msg}"
        ) from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ValueError(
            f"lambda expression {text!r} is too large ({len(nodes)} nodes, at most {MAX_NODES})"
        )
    for node in nodes:
        _check_node(node, text)
    body = tree.body
    return lambda epoch: _finite(_eval(body, float(epoch)), text, epoch)


def _check_node(node: ast.AST, text: str) -> None:
    where = f"lambda expression {text!r}"
    if (
        isinstance(node, (ast.Expression, ast.Load))
        or type(node) in _BINOPS
        or type(node) in _UNARY
    ):
        return
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        op = node.op
        if type(op) not in _BINOPS and type(op) not in _UNARY:
            raise ValueError(
                f"{where}: operator {type(op).__name__} is not allowed; accepted: {ACCEPTED}"
            )
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ValueError(
                f"{where}: constant {node.value!r} is not a number; accepted: {ACCEPTED}"
            )
        return
    if isinstance(node, ast.Name):
        if node.id != "epoch" and node.id not in CONSTANTS and node.id not in FUNCTIONS:
            raise ValueError(f"{where}: unknown name {node.id!r}; accepted: {ACCEPTED}")
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            raise ValueError(f"{where}: only calls to {', '.join(sorted(FUNCTIONS))} are allowed")
        return
    if isinstance(node, ast.Attribute):
        raise ValueError(
            f"{where}: attribute access (.{node.attr}) is not allowed; accepted: {ACCEPTED}"
        )
    raise ValueError(f"{where}: {type(node).__name__} is not allowed; accepted: {ACCEPTED}")


def _eval(node: ast.AST, epoch: float) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id == "epoch":
            return epoch
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise ValueError(f"{node.id!r} is a function; call it, e.g. {node.id}(epoch)")
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, epoch))
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, epoch), _eval(node.right, epoch)
        if isinstance(node.op, ast.Pow) and abs(right) > 1e4 and abs(left) > 1:
            return math.inf  # would be astronomically large; don't compute it
        try:
            value = _BINOPS[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ValueError("division by zero") from None
        except OverflowError:
            return math.inf
        if isinstance(value, complex):
            raise ValueError("a negative number raised to a fractional power is not real")
        return value if abs(value) <= MAX_MAGNITUDE else math.inf
    if isinstance(node, ast.Call):
        args = [_eval(a, epoch) for a in node.args]
        try:
            return float(FUNCTIONS[node.func.id](*args))
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"{node.func.id}({', '.join(f'{a:g}' for a in args)}): {err}"
            ) from None
        except OverflowError:
            return math.inf
    raise ValueError(f"{type(node).__name__} is not allowed")  # unreachable after _check_node


def _finite(value: float, text: str, epoch: int) -> float:
    if not math.isfinite(value):
        raise ValueError(f"lambda expression {text!r} is not finite at epoch {epoch}")
    return value


def check_factors(expression: str, steps: int) -> Callable[[int], float]:
    """Returns the factor function after checking it is finite and ≥ 0 at every step 0..steps-1.

    Raises:
        ValueError: naming the first step where the factor is negative, non-finite or fails.
    """
    factor = parse_factor(expression)
    for k in range(steps):
        try:
            value = factor(k)
        except ValueError as err:
            msg = str(err)
            if "at epoch" in msg:
                raise
            raise ValueError(
                f"lambda expression {expression.strip()!r} fails at epoch {k}: {msg}"
            ) from None
        if value < 0:
            raise ValueError(
                f"lambda expression {expression.strip()!r} gives a negative factor "
                f"({value:g}) at epoch {k}; a learning-rate factor must be ≥ 0"
            )
    return factor

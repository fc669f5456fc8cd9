"""The LambdaLR expression box: arithmetic in `epoch` only, never eval."""

import builtins
import math

import pytest

from bnlr.safe_expr import check_factors, parse_factor


@pytest.mark.parametrize(
    "expr, epoch, value",
    [
        ("0.5 ** epoch", 3, 0.125),
        ("1 / (1 + epoch / 10)", 10, 0.5),
        ("-(-2) * epoch", 2, 4.0),
        ("max(0.1, 1 - epoch / 10)", 20, 0.1),
        ("exp(-epoch)", 1, math.exp(-1)),
        ("cos(pi * epoch / 4)", 2, 0.0),
        ("epoch % 3 + epoch // 3", 7, 3.0),
    ],
)
def test_arithmetic_is_evaluated(expr, epoch, value):
    assert parse_factor(expr)(epoch) == pytest.approx(value, abs=1e-15)


@pytest.mark.parametrize(
    "expr, words",
    [
        ("__import__('os').system('true')", "only calls to"),
        ("().__class__", "attribute access"),
        ("epoch.real", "attribute access"),
        ("open('x')", "only calls to"),
        ("[1] * 10", "List is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("x + 1", "unknown name 'x'"),
        ("'a' * 3", "is not a number"),
        ("epoch if epoch else 1", "IfExp is not allowed"),
        ("0.5 ** ", "syntax error at column"),
        ("1" + "+1" * 150, "characters long"),
        ("", "empty"),
        ("epoch and 1", "BoolOp is not allowed"),
        ("max(epoch, key=1)", "only calls to"),
    ],
)
def test_hostile_or_bad_expressions_are_rejected(expr, words):
    with pytest.raises(ValueError) as err:
        parse_factor(expr)
    assert words in str(err.value)


def test_huge_powers_do_not_hang_and_are_rejected_as_not_finite():
    with pytest.raises(ValueError, match="not finite at epoch 0"):
        check_factors("9 ** 9 ** 9", 3)


@pytest.mark.parametrize(
    "expr, words",
    [
        ("1 - epoch", "negative factor (-1) at epoch 2"),
        ("1 / (2 - epoch)", "fails at epoch 2: division by zero"),
        ("log(epoch)", "fails at epoch 0"),
    ],
)
def test_factors_are_checked_at_every_epoch(expr, words):
    with pytest.raises(ValueError) as err:
        check_factors(expr, 5)
    assert words in str(err.value)


def test_never_reaches_eval_or_exec(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(builtins, "exec", boom)
    assert check_factors("0.5 ** epoch", 4)(2) == 0.25

"""Jinja2 templates in mock.yaml, rendered in a sandbox over ``{args, state, now, uuid}``.

A string that is exactly one ``{{ expr }}`` evaluates to the expression's value with its JSON
type kept (``"{{ args.count + 1 }}"`` is an int, ``"{{ state.items }}"`` a list), while anything
else (``"{{ a }}-{{ b }}"``, text around an expression) renders to an ordinary string. The sandbox
refuses attribute tricks such as ``{{ ''.__class__.__mro__ }}`` with a :class:`TemplateError`.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.S)


class TemplateError(ValueError):
    pass


@functools.lru_cache(maxsize=4096)
def _expression(expr: str) -> Any:
    return _ENV.compile_expression(expr, undefined_to_none=False)


@functools.lru_cache(maxsize=4096)
def _template(text: str) -> Any:
    return _ENV.from_string(text)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check(value: Any) -> None:
    """Raise :class:`TemplateError` if any template inside ``value`` does not parse."""
    if isinstance(value, dict):
        for v in value.values():
            check(v)
    elif isinstance(value, list):
        for v in value:
            check(v)
    elif is_template(value):
        m = _SINGLE.match(value)
        try:
            if m:
                _ENV.compile_expression(m.group("expr"))
            else:
                _ENV.parse(value)
        except TemplateSyntaxError as e:
            raise TemplateError(f"bad template {value!r}: {e.message}") from None


def render(value: Any, context: dict[str, Any]) -> Any:
    """``value`` with every template rendered; containers are rendered recursively."""
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if not is_template(value):
        return value
    try:
        m = _SINGLE.match(value)
        if m:
            return _expression(m.group("expr"))(**context)
        return _template(value).render(**context)
    except SecurityError as e:
        raise TemplateError(f"template refused by the sandbox: {e}") from None
    except UndefinedError as e:
        raise TemplateError(f"template {value!r}: {e.message}") from None
    except TemplateSyntaxError as e:
        raise TemplateError(f"bad template {value!r}: {e.message}") from None
    except Exception as e:  # a division by zero, a bad index …: the template's problem, not ours
        raise TemplateError(f"template {value!r} failed: {type(e).__name__}: {e}") from None

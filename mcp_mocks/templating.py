"""Jinja2 templates in mock.yaml, rendered in a sandbox over ``{args, state, now, uuid}``.

A string that is exactly one ``{{ expr }}`` evaluates to the expression's value with its JSON
type kept (``"{{ args.count + 1 }}"`` is an int, ``"{{ state.items }}"`` a list), while anything
else (``"{{ a }}-{{ b }}"``, text around an expression) renders to an ordinary string. The sandbox
refuses attribute tricks such as ``{{ ''.__class__.__mro__ }}`` with a :class:`TemplateError`.

Undefined names follow agenteval, whose mocks rely on them for optional arguments: a lone
``{{ args.missing }}`` is ``null``, inside a longer string it renders empty, and anything more
(``args.missing.deeper``, ``args.missing + 1``) is an error. With ``strict=True`` every use of an
undefined name is a :class:`TemplateError`.

Whatever :func:`render` returns is plain, strict JSON (dict with string keys, list, str, int, finite
float, bool, None) and shares nothing with the context: a generator, a set or a tuple becomes a list,
``bytes`` their UTF-8 text, an undefined a ``null``, a non-string key a string, anything else its
``str()`` — so it can be stored in the state as is. What no fallback can make JSON (NaN or
±Infinity, an integer past the interpreter's digit limit, a cycle, nesting deeper than Python can
walk) is a :class:`NoJSONForm` naming where it is.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agentcap_addons.wire.util.errors import InputError

_ENVS = {strict: ImmutableSandboxedEnvironment(undefined=StrictUndefined if strict else Undefined, autoescape=False,
                                               keep_trailing_newline=True) for strict in (False, True)}
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.S)
_BRACED = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.S)
_PATH_TOKEN = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|[^.{]+|\{|\.", re.S)
_SCALARS = (str, int, float, bool, type(None))


class TemplateError(InputError):
    pass


class NoJSONForm(TemplateError):
    """A value strict JSON (RFC 8259) cannot hold, even after the fallbacks of :func:`plain`."""


@functools.lru_cache(maxsize=4096)
def _expression(expr: str, strict: bool) -> Any:
    return _ENVS[strict].compile_expression(expr, undefined_to_none=False)


@functools.lru_cache(maxsize=4096)
def _template(text: str, strict: bool) -> Any:
    return _ENVS[strict].from_string(text)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def split_path(path: str) -> list[str]:
    """A mutation path's segments, split on the dots outside ``{{ … }}``: whatever a segment's
    template renders to is one key, so an argument holding a dot (``C02.x``) cannot reach into
    another part of the state."""
    segs, cur = [], ""
    for m in _PATH_TOKEN.finditer(path):
        if m.group() == ".":
            segs.append(cur)
            cur = ""
        else:
            cur += m.group()
    segs.append(cur)
    return segs


def condition(text: str) -> str:
    """The expression of a ``when:`` condition, written bare (``args.n > 1``) or braced."""
    m = _BRACED.match(text)
    return m.group("expr") if m else text


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
                _ENVS[True].compile_expression(m.group("expr"))
            else:
                _ENVS[True].parse(value)
        except TemplateSyntaxError as e:
            raise TemplateError(f"bad template {value!r}: {e.message}") from None


def check_expression(expr: str) -> None:
    try:
        _ENVS[True].compile_expression(expr)
    except TemplateSyntaxError as e:
        raise TemplateError(f"bad expression {expr!r}: {e.message}") from None


def render(value: Any, context: dict[str, Any], strict: bool = False) -> Any:
    """``value`` with every template rendered, as plain JSON; containers are rendered recursively."""
    if isinstance(value, dict):
        return {k: render(v, context, strict) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context, strict) for v in value]
    if not is_template(value):
        return value
    m = _SINGLE.match(value)
    if m:
        return _run(value, lambda: plain(_expression(m.group("expr"), strict)(**context)))
    return _run(value, lambda: _template(value, strict).render(**context))


def evaluate(expr: str, context: dict[str, Any], strict: bool = False) -> Any:
    """A bare expression's value (a ``when:`` condition), undefined kept as Jinja's Undefined."""
    value = _run(expr, lambda: _expression(expr, strict)(**context))
    if isinstance(value, StrictUndefined):
        raise TemplateError(f"condition {expr!r}: {_undefined_message(value)}")
    return value


def _run(text: str, fn: Any) -> Any:
    try:
        return fn()
    except SecurityError as e:
        raise TemplateError(f"template refused by the sandbox: {e}") from None
    except UndefinedError as e:
        raise TemplateError(f"template {text!r}: {e.message}") from None
    except TemplateSyntaxError as e:
        raise TemplateError(f"bad template {text!r}: {e.message}") from None
    except TemplateError as e:  # from plain(): an undefined (strict) or a cycle in the value
        raise TemplateError(f"template {text!r}: {e}") from None
    except Exception as e:  # a division by zero, a bad index …: the template's problem, not ours
        raise TemplateError(f"template {text!r} failed: {type(e).__name__}: {e}") from None


def plain(value: Any, what: str = "") -> Any:
    """``value`` as fresh plain strict JSON (see the module docstring); :class:`NoJSONForm` when it
    has none, naming where from ``what`` (``result.items.3 is nan``); a strict undefined inside is a
    :class:`TemplateError`."""
    if type(value) in _SCALARS:
        return _scalar(value, what)
    try:
        return json.loads(json.dumps(value, default=json_default, allow_nan=False))
    except TemplateError:
        raise
    except (TypeError, ValueError, RecursionError):  # a tuple key, NaN, a cycle …: the slow path says which
        try:
            return _plain_slow(value, set(), what)
        except RecursionError:
            raise NoJSONForm(f"{what or 'the value'} is nested too deep for JSON") from None


def json_default(o: Any) -> Any:
    """``json.dumps(default=…)`` for values a template or a handler may produce."""
    if isinstance(o, StrictUndefined):
        raise TemplateError(_undefined_message(o))
    if isinstance(o, Undefined):
        return None
    if isinstance(o, Mapping):
        return dict(o)
    if isinstance(o, (bytes, bytearray)):
        return o.decode("utf-8", "replace")
    if isinstance(o, Iterable) and not isinstance(o, str):
        return list(o)
    return str(o)


def _plain_slow(value: Any, seen: set[int], where: str) -> Any:
    if type(value) in _SCALARS:
        return _scalar(value, where)
    if isinstance(value, _SCALARS):  # a subclass (Markup, an IntEnum …) as its plain base type
        return _scalar(next(t(value) for t in (bool, str, int, float) if isinstance(value, t)), where)
    if id(value) in seen:
        raise NoJSONForm(f"{where or 'the value'} refers to itself (a cycle): it has no JSON form")
    seen = seen | {id(value)}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            key = _key(k, where)
            out[key] = _plain_slow(v, seen, f"{where}.{key}" if where else key)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain_slow(v, seen, f"{where}.{i}" if where else str(i)) for i, v in enumerate(value)]
    return _plain_slow(json_default(value), seen, where)


def _key(k: Any, where: str) -> str:
    """A mapping key as JSON's string: a scalar as JSON writes it (``1`` → ``"1"``), bytes as text."""
    if isinstance(k, str):
        return str(k)
    if isinstance(k, _SCALARS):
        return json.dumps(_plain_slow(k, set(), f"a key of {where}" if where else "a key"))
    return k.decode("utf-8", "replace") if isinstance(k, (bytes, bytearray)) else str(k)


def _scalar(value: Any, where: str) -> Any:
    """``value`` (str, int, float, bool or None) when strict JSON holds it, else :class:`NoJSONForm`."""
    if type(value) is float and not math.isfinite(value):
        raise NoJSONForm(f"{where or 'the value'} is {value!r}: JSON has no NaN or Infinity")
    if type(value) is int and _too_many_digits(value):
        raise NoJSONForm(f"{where or 'the value'} is an integer of more than {sys.get_int_max_str_digits()} "
                         "digits: this Python cannot write it as JSON")
    return value


def _too_many_digits(n: int) -> bool:
    limit = sys.get_int_max_str_digits()
    if not limit or n.bit_length() <= 3 * limit:  # 3 bits < one decimal digit: far below the limit
        return False
    try:
        int.__repr__(n)
    except ValueError:
        return True
    return False


def _undefined_message(u: Undefined) -> str:
    return u._undefined_message

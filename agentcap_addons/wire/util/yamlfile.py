"""YAML files with line numbers, so a bad input is reported as ``file:line: key: what is wrong``.

Every YAML input of agentcap (model scripts, mock.yaml, scenario.yaml …) goes through
:func:`load`, which keeps the line of every mapping key and list item, and :class:`ConfigError`,
whose message names the file, the line and the dotted key.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from agentcap_addons.wire.util.errors import InputError


class ConfigError(InputError):
    """Bad input: one message naming the file, the line and the key."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, key: str, message: str) -> None:
        self.path, self.line, self.key, self.message = str(path), line, key, message
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


class ConfigErrors(ConfigError):
    """Several independent problems in one file, in file order; reads as the first (``errors`` has all)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = sorted(errors, key=lambda e: e.line or 0)
        first = self.errors[0]
        super().__init__(first.path, first.line, first.key, first.message)
        self.args = (f"{self}  (+{len(self.errors) - 1} more in this file)",)


class Found:
    """The ConfigErrors of the independent parts of one file, so a linter reports all of them at once::

        found = Found()
        with found:
            check_keys(...)   # a ConfigError here is kept, and the next part is still checked
        found.raise_any()     # the one error, or ConfigErrors for several
    """

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def __enter__(self) -> Found:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, ConfigErrors):
            self.errors += exc.errors
        elif isinstance(exc, ConfigError):
            self.errors.append(exc)
        else:
            return False
        return True

    def raise_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


def each_error(exc: ConfigError) -> list[ConfigError]:
    """The single problems an error stands for (one, or each of a ConfigErrors)."""
    return list(exc.errors) if isinstance(exc, ConfigErrors) else [exc]


class Located:
    """The parsed document plus the line of each dotted key path (``replies.1.tool_calls.0.name``)."""

    def __init__(self, path: Path, data: Any, lines: dict[str, int]) -> None:
        self.path, self.data, self.lines = path, data, lines

    def line(self, key: str) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rpartition(".")[0]
        return self.lines.get("")

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, self.line(key), key, message)


MAX_NODES = 200_000  # values built from one file: far above any real input, far below an alias bomb
MAX_DEPTH = 64  # nesting of mappings and lists


class _Budget:
    def __init__(self, path: Path) -> None:
        self.path, self.nodes = path, 0

    def step(self, node: yaml.Node, depth: int) -> None:
        self.nodes += 1
        line = node.start_mark.line + 1
        if self.nodes > MAX_NODES:
            raise ConfigError(self.path, line, "", f"more than {MAX_NODES:,} values (aliases that repeat each "
                                                   "other: a YAML alias bomb?)")
        if depth > MAX_DEPTH:
            raise ConfigError(self.path, line, "", f"nested deeper than {MAX_DEPTH} levels")


def _build(node: yaml.Node, prefix: str, lines: dict[str, int], loader: yaml.SafeLoader, budget: _Budget,
           depth: int = 0) -> Any:
    budget.step(node, depth)
    lines.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            path = f"{prefix}.{key}" if prefix else str(key)
            try:
                if key in out:
                    raise ConfigError(budget.path, knode.start_mark.line + 1, path,
                                      f"given twice (first on line {lines[path]}): say it once")
            except TypeError:  # a key YAML allows and Python cannot hash (a list): nothing agentcap reads
                raise ConfigError(budget.path, knode.start_mark.line + 1, prefix, "a key must be a plain value") \
                    from None
            lines[path] = knode.start_mark.line + 1
            out[key] = _build(vnode, path, lines, loader, budget, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, f"{prefix}.{i}" if prefix else str(i), lines, loader, budget, depth + 1)
                for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def read_text(path: str | os.PathLike[str]) -> str:
    """A UTF-8 input file's text; a missing or unreadable file is a ConfigError naming it."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8-sig")  # a BOM (Windows editors write one) is no part of the text
    except FileNotFoundError:
        raise ConfigError(p, None, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(p, None, "", f"cannot read: {e}") from None


def want(doc: Located, value: Any, types: type | tuple[type, ...], key: str, what: str) -> Any:
    """``value`` when it is one of ``types`` (a bool is not an int here), else a ConfigError at ``key``."""
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise doc.error(key, f"must be {what}, not {type(value).__name__}")
    return value


def load(path: str | os.PathLike[str]) -> Located:
    p = Path(path)
    text = read_text(p)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (a NUL, a C0 control)
        line = text[: e.position].count("\n") + 1
        raise ConfigError(p, line, "", f"not valid YAML: character {e.character!r} is not allowed in YAML") from None
    try:
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        data = _build(node, "", lines, loader, _Budget(p)) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ConfigError(p, mark.line + 1 if mark else None, "", f"not valid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(p, None, "", f"not valid YAML: {e}") from None
    except RecursionError:  # the parser's own recursion, before any depth check of ours
        raise ConfigError(p, None, "", f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
    return Located(p, data, lines)


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(doc: Located, obj: dict[str, Any], prefix: str, allowed: set[str]) -> None:
    """Every unknown key of ``obj`` (ConfigErrors when there are several)."""
    found = Found()
    for key in obj:
        if key not in allowed:
            path = f"{prefix}.{key}" if prefix else str(key)
            found.errors.append(doc.error(path, f"unknown key{did_you_mean(key, allowed)} "
                                                f"(expected one of: {', '.join(sorted(allowed))})"))
    found.raise_any()

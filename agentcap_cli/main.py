"""The ``agentcap`` command: a thin click layer over library functions.

Every option can also be set by an ``AGENTCAP_*`` environment variable (named in ``--help``).
Bad input exits 2 with one message naming the flag; data goes to stdout, logs to stderr.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

#: command name → (where it lives, its one-line help). A command's module (and what it needs:
#: mitmproxy, mcp, pyarrow, textual, podman-py …) is imported only when that command runs, and
#: ``agentcap --help`` reads the short help from here, so every start stays quick (tested against
#: each command's own docstring).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("agentcap_cli.commands.run:run", "Run AGENT over a corpus of prompts, every model call captured."),
    "ls": ("agentcap_cli.commands.ls:ls", "The runs in a workspace."),
    "export": ("agentcap_cli.commands.export:export", "Export runs as parquet datasets, locally or to the Hub."),
    "inspect": ("agentcap_cli.commands.inspect:inspect", "Browse runs, parquet files or Hub datasets."),
    "test": ("agentcap_cli.commands.suite:test", "Run a test suite: every cell with its repeats."),
    "validate": ("agentcap_cli.commands.suite:validate", "Check a test project deeply (no model calls)."),
    "list": ("agentcap_cli.commands.suite:list_", "The scenarios of a test project and their cells."),
    "init": ("agentcap_cli.commands.suite:init", "A new test project that passes out of the box."),
    "proxy": ("agentcap_cli.commands.proxy:proxy", "The capture proxy in front of one upstream."),
    "model": ("agentcap_cli.commands.model:model", "Local model upstreams: scripted or replayed."),
    "mock": ("agentcap_cli.commands.mock:mock", "Mock MCP servers whose state a test controls."),
    "sandbox": ("agentcap_cli.commands.sandbox:sandbox", "Podman images for the agents, and their leftovers."),
    "doctor": ("agentcap_cli.commands.sandbox:doctor", "Check what the sandbox needs."),
}


def _error_hint(self: click.Parameter, ctx: click.Context) -> str:
    """Name what the user actually set: the environment variable when the value came from one."""
    if ctx.get_parameter_source(self.name or "") == ParameterSource.ENVIRONMENT:
        names = [self.envvar] if isinstance(self.envvar, str) else list(self.envvar or [])
        given = [n for n in names if os.environ.get(n)]
        if given:
            return f"${given[0]} (for {' / '.join(repr(o) for o in self.opts)})"
    return _click_error_hint(self, ctx)


_click_error_hint = click.Parameter.get_error_hint
click.Parameter.get_error_hint = _error_hint  # type: ignore[method-assign]


def workspace_option(f):  # noqa: ANN001, ANN201
    """``--workspace DIR`` (env ``AGENTCAP_WORKSPACE``): where ``.agentcap/`` run dirs live."""
    def use(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
        if value is not None:
            os.environ["AGENTCAP_WORKSPACE"] = str(value.resolve())
        return value

    return click.option("--workspace", type=click.Path(file_okay=False, path_type=Path), envvar="AGENTCAP_WORKSPACE",
                        callback=use, expose_value=False, is_eager=True,
                        help="Where .agentcap/ run dirs live (default: the current directory).  "
                             "[env AGENTCAP_WORKSPACE]")(f)


#: the ``agenteval`` command (agenteval's CLI): the same commands under agenteval's names
AGENTEVAL_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("agentcap_cli.commands.suite:test", "Run the suite, emit reports, exit nonzero on failure."),
    "list": ("agentcap_cli.commands.suite:list_", "List the discovered scenarios."),
    "validate": ("agentcap_cli.commands.suite:validate", "Check the project's structure without calling any model."),
    "init": ("agentcap_cli.commands.agenteval:init", "Scaffold a new eval project."),
}


class _Refused(click.ClickException):
    def __init__(self, exc: Exception) -> None:
        super().__init__(str(exc))
        self.exit_code = getattr(exc, "exit_code", 1)


class LazyGroup(click.Group):
    """Commands from a table ``name → ("module:attr", short help)``, imported only when one runs."""

    table: dict[str, tuple[str, str]] = COMMANDS

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.table)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        ref = self.table.get(name)
        if ref is None:
            return None
        module, _, attr = ref[0].partition(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context) -> object:
        """The one place an error reaching the top becomes an exit code: any ``AgentcapError`` that a
        command did not handle prints ``Error: <message>`` and exits with its ``exit_code`` (2 for bad
        input, 1 otherwise) — never a traceback. A usage error (a bad flag or value, exit 2) is click's
        usage banner and ``Error: …`` on a terminal, and just the ``Error: …`` line when stderr is not one
        (CI logs are grepped a line at a time)."""
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None
        except Exception as exc:
            from agentcap_addons.wire.util.errors import AgentcapError  # only on the error path

            if isinstance(exc, AgentcapError):
                raise _Refused(exc) from exc
            raise

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # a bad option of the group itself (``agentcap --bogus``)
            raise _one_line(exc) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table: no command module is imported to print it."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, self.table[name][1]) for name in self.list_commands(ctx)])


def _one_line(exc: click.UsageError) -> click.UsageError:
    """``exc`` as it is, on a terminal; otherwise the same message with no context, which click prints
    as just its ``Error: …`` line (no usage banner, no --help hint): CI logs are grepped a line at a time."""
    if sys.stderr.isatty() or isinstance(exc, click.exceptions.NoArgsIsHelpError):  # the latter is the help
        return exc
    return click.UsageError(exc.format_message())


class AgentevalGroup(LazyGroup):
    table = AGENTEVAL_COMMANDS


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="agentcap")
def cli() -> None:
    """Run coding agents, capture every model call from the wire, publish the captures."""


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (a CI timeout, ``kill``, a container stop) ends a command the way Ctrl-C does:
    ``finally`` blocks run, so key directories, child proxies and containers are cleaned up."""
    raise KeyboardInterrupt(f"signal {signum}")


@click.group(cls=AgentevalGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="agentcap")
def agenteval() -> None:
    """Unit tests for agents (agenteval projects), run in agentcap's sandbox with every model call captured."""


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="agentcap")


def agenteval_main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    agenteval(prog_name="agenteval")


if __name__ == "__main__":
    main()

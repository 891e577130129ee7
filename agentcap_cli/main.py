"""The ``agentcap`` command: a thin click layer over library functions.

Every option can also be set by an ``AGENTCAP_*`` environment variable (named in ``--help``).
Bad input exits 2 with one message naming the flag; data goes to stdout, logs to stderr.
"""

from __future__ import annotations

import importlib
import signal

import click

#: command name → where it lives; a command's module (and what it needs: mitmproxy, mcp, pyarrow,
#: textual, podman-py …) is imported only when that command runs, so every start stays quick
COMMANDS = {
    "run": "agentcap_cli.commands.run:run",
    "ls": "agentcap_cli.commands.ls:ls",
    "export": "agentcap_cli.commands.export:export",
    "inspect": "agentcap_cli.commands.inspect:inspect",
    "test": "agentcap_cli.commands.suite:test",
    "validate": "agentcap_cli.commands.suite:validate",
    "list": "agentcap_cli.commands.suite:list_",
    "init": "agentcap_cli.commands.suite:init",
    "proxy": "agentcap_cli.commands.proxy:proxy",
    "model": "agentcap_cli.commands.model:model",
    "mock": "agentcap_cli.commands.mock:mock",
    "sandbox": "agentcap_cli.commands.sandbox:sandbox",
    "doctor": "agentcap_cli.commands.sandbox:doctor",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        ref = COMMANDS.get(name)
        if ref is None:
            return None
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="agentcap")
def cli() -> None:
    """Run coding agents, capture every model call from the wire, publish the captures."""


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (a CI timeout, ``kill``, a container stop) ends a command the way Ctrl-C does:
    ``finally`` blocks run, so key directories, child proxies and containers are cleaned up."""
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="agentcap")


if __name__ == "__main__":
    main()

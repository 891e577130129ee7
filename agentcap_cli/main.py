"""The ``agentcap`` command: a thin click layer over library functions.

Every option can also be set by an ``AGENTCAP_*`` environment variable (named in ``--help``).
Bad input exits 2 with one message naming the flag; data goes to stdout, logs to stderr.
"""

from __future__ import annotations

import click

from agentcap_cli.commands.mock import mock
from agentcap_cli.commands.model import model
from agentcap_cli.commands.export import export
from agentcap_cli.commands.inspect import inspect
from agentcap_cli.commands.ls import ls
from agentcap_cli.commands.proxy import proxy
from agentcap_cli.commands.run import run
from agentcap_cli.commands.sandbox import doctor, sandbox
from agentcap_cli.commands.suite import init, list_, test, validate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="agentcap")
def cli() -> None:
    """Run coding agents, capture every model call from the wire, publish the captures."""


cli.add_command(run)
cli.add_command(ls)
cli.add_command(export)
cli.add_command(inspect)
cli.add_command(test)
cli.add_command(validate)
cli.add_command(list_)
cli.add_command(init)
cli.add_command(proxy)
cli.add_command(model)
cli.add_command(mock)
cli.add_command(sandbox)
cli.add_command(doctor)


def main() -> None:
    cli(prog_name="agentcap")


if __name__ == "__main__":
    main()

"""The base of agentcap's own errors, shared by every package (the CLI, the sandbox, the mocks, the
addons' wire library), so a caller can catch "anything agentcap refused" with one class and the CLI
maps every one of them to an exit code in one place (``agentcap_cli.main``).

Each concrete error also derives from the builtin it always was (``ValueError``, ``LookupError``,
``RuntimeError``), so ``except ValueError`` in code written before this base keeps working.
"""

from __future__ import annotations


class AgentcapError(Exception):
    """Something agentcap could not do. The CLI prints ``Error: <message>`` and exits ``exit_code``."""

    exit_code: int = 1


class InputError(AgentcapError, ValueError):
    """Bad input from the user: a file, a key in it, a flag or a variable. The message names it;
    the CLI exits 2, as for a bad flag."""

    exit_code = 2

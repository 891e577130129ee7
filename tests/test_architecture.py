"""The import contract (docs/architecture.md), checked on the source by an AST walk:

* ``agentcap_addons.wire`` never imports mitmproxy (readers use it without mitmproxy installed);
* ``sandbox`` and ``mcp_mocks`` import nothing of agentcap's but ``agentcap_addons.wire``; the three
  packages below the CLI never import ``agentcap_cli``, nor each other;
* ``agentcap_cli.commands`` are imported only by ``agentcap_cli.main`` (lazily, from its table) and
  import no other command module;
* no import cycle at module level (imports inside functions are deferred on purpose and not counted).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("agentcap_addons", "agentcap_cli", "sandbox", "mcp_mocks", "agenteval")


def module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The modules ``path`` imports (absolute names); with ``top_level_only``, not those in functions."""
    tree = ast.parse(path.read_text())
    me = module_of(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also imports under module-level if/try (not TYPE_CHECKING)
        extra = []
        for n in tree.body:
            if isinstance(n, ast.Try):
                extra += n.body + n.orelse + [s for h in n.handlers for s in h.body]
            elif isinstance(n, ast.If) and "TYPE_CHECKING" not in ast.dump(n.test):
                extra += n.body + n.orelse
        nodes = list(nodes) + extra
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
                out.add(name)
                if not node.module:  # from . import x, y: the submodules
                    out.update(f"{name}.{a.name}" for a in node.names)
            else:
                out.add(node.module or "")
    return out


def sources() -> dict[str, Path]:
    return {module_of(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def test_the_import_rules_hold():
    problems = []
    for mod, path in sorted(sources().items()):
        top = mod.split(".")[0]
        for name in sorted(imports(path, top_level_only=False)):
            ntop = name.split(".")[0]
            if mod.startswith("agentcap_addons.wire") and ntop == "mitmproxy":
                problems.append(f"{mod} imports {name}: wire must not need mitmproxy")
            if top in ("sandbox", "mcp_mocks", "agentcap_addons") and ntop in PACKAGES and ntop != top \
                    and not name.startswith("agentcap_addons.wire"):
                problems.append(f"{mod} imports {name}: only agentcap_addons.wire is shared below the CLI")
            if name.startswith("agentcap_cli.commands") and mod != "agentcap_cli.main" \
                    and not (mod.startswith("agentcap_cli.commands") and name in ("agentcap_cli.commands", mod)):
                problems.append(f"{mod} imports {name}: commands are reached through agentcap_cli.main only")
    assert not problems, "\n".join(problems)


def test_no_import_cycle_at_module_level():
    mods = sources()
    graph = {m: {n for n in imports(p, top_level_only=True) if n in mods and n != m} for m, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    # a package importing its own submodules in __init__ is not a cycle of concern
    cycles = [c for c in cycles if not all(x.startswith(c.split(" -> ")[0]) for x in c.split(" -> "))]
    assert not cycles, "\n".join(cycles)


def _refuse_with(exc: Exception) -> None:
    raise exc


def test_an_agentcap_error_no_command_handled_exits_with_its_code_and_one_line():
    """The one error → exit-code mapping (agentcap_cli.main): bad input 2, any other refusal 1."""
    import click
    from click.testing import CliRunner

    from agentcap_addons.wire import AgentcapError, InputError
    from agentcap_cli.main import LazyGroup
    from sandbox.agents import UnknownAgent
    from sandbox.podman import SandboxError

    for exc, code in ((InputError("tasks.txt:3: empty prompt"), 2), (UnknownAgent("nope"), 2),
                      (SandboxError("podman is not installed"), 1), (AgentcapError("cannot"), 1)):
        cmd = click.Command("boom", callback=lambda exc=exc: _refuse_with(exc))
        group = LazyGroup("agentcap", commands={"boom": cmd})
        group.table = {"boom": ("", "")}
        group.get_command = lambda ctx, name, cmd=cmd: cmd  # type: ignore[method-assign]
        result = CliRunner().invoke(group, ["boom"])
        assert result.exit_code == code, (exc, result.output)
        assert result.output.strip() == f"Error: {exc}"
    # anything else is a bug and keeps its traceback
    group = LazyGroup("agentcap")
    group.table = {"boom": ("", "")}
    group.get_command = lambda ctx, name: click.Command("boom", callback=lambda: _refuse_with(KeyError("x")))  # type: ignore[method-assign]
    result = CliRunner().invoke(group, ["boom"])
    assert isinstance(result.exception, KeyError)


def test_the_facades_give_every_name_they_list_and_a_small_part_stays_small():
    import subprocess
    import sys

    import agentcap_addons.wire as wire
    import sandbox

    for facade in (wire, sandbox):
        for name in facade.__all__:
            assert getattr(facade, name) is not None, f"{facade.__name__}.{name}"
    # the wire facade is lazy: the sandbox's one use of it (atomic files) does not load the API decoders
    # and so is the sandbox's: `import sandbox.podman` (doctor, sandbox ls) loads no adapter and no bridge
    for probe in ("import sys, agentcap_addons.wire.util.files; print('agentcap_addons.wire.api.decode' in sys.modules)",
                  "import sys, sandbox.podman; print(any(m in sys.modules for m in ('sandbox.agents', 'sandbox.bridge')))"):
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
        assert out.stdout.strip() == "False", probe


def test_a_usage_error_is_one_line_through_a_pipe_and_click_s_banner_on_a_terminal(tmp_path):
    """Bad flags, values, commands and env vars (exit 2): only the ``Error: …`` line when stderr is a pipe
    (a CI log), click's usage banner and --help hint when it is a terminal."""
    import os
    import pty
    import subprocess

    from tests.support import cli

    cases = [(["run", "--agent", "nosuch", "--tasks", "x.txt"], {}, "Invalid value for '--agent'"),
             (["lss"], {}, "No such command 'lss'"),
             (["--bogus"], {}, "No such option '--bogus'"),
             (["sandbox", "nosuch"], {}, "No such command 'nosuch'"),
             (["run", "--agent", "pi", "--tasks", "x.txt"], {"AGENTCAP_TURNS": "abc"}, "$AGENTCAP_TURNS")]
    for args, env, want in cases:
        r = cli.agentcap(*args, workspace=tmp_path, timeout=60, **env)
        assert r.returncode == 2 and r.stdout == "", (args, r.stderr)
        assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith("Error: ") and want in r.stderr
    for group in ([], ["sandbox"]):  # a group with no command: its help, as click prints it (no "Error:")
        r = cli.agentcap(*group, workspace=tmp_path, timeout=60)
        assert r.returncode == 2 and r.stderr.startswith("Usage: ") and "Error" not in r.stderr, r.stderr
    # on a terminal: as click prints it
    leader, follower = pty.openpty()
    try:
        p = subprocess.run(cli.argv("lss"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower,
                           env=cli.environ(tmp_path), timeout=60)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child's side is closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert p.returncode == 2 and b"Usage: " in seen and b"Try 'agentcap --help'" in seen and b"No such command" in seen

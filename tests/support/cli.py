"""The one way tests launch the agentcap CLI (or any other long-lived program): as a user's shell
would, with a known environment, and nothing left running afterwards.

* ``agentcap(*args)`` runs a command to completion and returns its ``CompletedProcess`` (text);
  ``agenteval(*args)`` the same for the agenteval command.
* ``start(*args)`` is a context manager yielding the running ``Popen`` of a command the test talks to
  or interrupts (``proxy``, ``mock serve``, ``model serve``, ``run``, ``test``); ``background(argv)``
  the same for any other program (mitmdump, a ``python -c`` child).

Guarantees, for every child:

* **SIGINT at its default.** A pytest started from a script's background job (``pytest &``) hands its
  children SIGINT = ignored, and the Ctrl-C a test sends would do nothing. A two-line trampoline puts
  the default back before the program is exec'd (no ``preexec_fn``: it is unsafe with the threads
  tests run), so Python children raise KeyboardInterrupt as in a terminal.
* **Its own process group, stopped when the block ends**, passed or failed: SIGTERM to the child
  first (agentcap ends on it as on Ctrl-C: containers removed, proxies stopped), at most ``grace``
  seconds while its pipes are drained, then SIGKILL to whatever is left in the group (a proxy's
  mitmdump; the capture writer, in a session of its own, ends when mitmdump's pipe closes).

The environment (``environ``): this process's, less the variables whose names start with a prefix
in ``clean``; ``HF_HUB_DISABLE_TELEMETRY=1`` (an export never calls home); ``AGENTCAP_WORKSPACE`` when a
``workspace`` is given; then the test's own variables (keyword arguments, ``None`` unsets one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENTRY = {
    "agentcap": ["-m", "agentcap_cli.main"],
    "agenteval": ["-c", "from agentcap_cli.main import agenteval_main; agenteval_main()"],
}
# exec ARGV with SIGINT back at SIG_DFL (a Python program then installs its KeyboardInterrupt handler)
TRAMPOLINE = [sys.executable, "-S", "-c",
              "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"]
RUN_TIMEOUT = 900  # the longest test's own limit; pytest-timeout usually ends a hung test first


def argv(*args: str, program: str = "agentcap") -> list[str]:
    """The command line of ``agentcap ARGS`` (or ``agenteval ARGS``) run by this interpreter."""
    return [sys.executable, *ENTRY[program], *args]


def environ(workspace: Path | None = None, clean: tuple[str, ...] = (), **env: str | None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not (clean and k.startswith(clean))}
    out["HF_HUB_DISABLE_TELEMETRY"] = "1"
    if workspace is not None:
        out["AGENTCAP_WORKSPACE"] = str(workspace)
    for k, v in env.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


@contextmanager
def background(command: Sequence[str], *, cwd: Path = REPO, env: dict[str, str] | None = None, grace: float = 30,
               stdin: int | None = subprocess.DEVNULL, stdout: int | None = subprocess.PIPE,
               stderr: int | None = subprocess.PIPE, text: bool = True,
               pass_fds: Sequence[int] = ()) -> Iterator[subprocess.Popen]:
    """``command`` running in its own process group with SIGINT at its default; the group stopped on exit."""
    proc = subprocess.Popen([*TRAMPOLINE, *command], cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                            text=text, pass_fds=pass_fds, process_group=0)
    try:
        yield proc
    finally:
        stop(proc, grace)


def stop(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM, at most ``grace`` seconds (pipes drained meanwhile), then SIGKILL to the process group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # nothing left in the group
        pass
    proc.communicate()  # reaps the child, closes its pipes


@contextmanager
def start(*args: str, cwd: Path = REPO, workspace: Path | None = None, clean: tuple[str, ...] = (),
          program: str = "agentcap", grace: float = 30, stdin: int | None = subprocess.DEVNULL,
          stdout: int | None = subprocess.PIPE, stderr: int | None = subprocess.PIPE, text: bool = True,
          **env: str | None) -> Iterator[subprocess.Popen]:
    """``agentcap ARGS`` in the background (see ``background``), for a test that talks to it or stops it."""
    with background(argv(*args, program=program), cwd=cwd, env=environ(workspace, clean, **env), grace=grace,
                    stdin=stdin, stdout=stdout, stderr=stderr, text=text) as proc:
        yield proc


def agentcap(*args: str, cwd: Path = REPO, workspace: Path | None = None, clean: tuple[str, ...] = (),
             timeout: float = RUN_TIMEOUT, input: str | None = None, program: str = "agentcap",
             **env: str | None) -> subprocess.CompletedProcess:
    """``agentcap ARGS`` to completion: its exit code, stdout and stderr (text)."""
    with start(*args, cwd=cwd, workspace=workspace, clean=clean, program=program,
               stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL, **env) as proc:
        out, err = proc.communicate(input, timeout=timeout)
    return subprocess.CompletedProcess(argv(*args, program=program), proc.returncode, out, err)


def agenteval(*args: str, **kw) -> subprocess.CompletedProcess:
    """``agenteval ARGS`` to completion (the keyword arguments of ``agentcap``)."""
    return agentcap(*args, program="agenteval", **kw)


def read_exports(proc: subprocess.Popen, lines: list[str] | None = None) -> dict[str, str]:
    """The ``export K=V`` lines ``proxy`` / ``model serve`` print, up to the closing "Ctrl-C" line (every line
    read goes to ``lines``)."""
    env: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if lines is not None:
            lines.append(line)
        if line.startswith("export "):
            k, _, v = line[len("export "):].strip().partition("=")
            env[k] = v
        elif "Ctrl-C" in line:
            break
    return env

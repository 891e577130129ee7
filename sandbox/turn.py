"""One agent turn in a sandbox: adapter + image + container, as a library call.

The caller owns everything outside the container: the capture proxy and the per-turn key (already
registered), the MCP mocks, and the bridge whose sockets are the container's only way out. This
module puts the adapter's config in place, runs its command in a fresh container, reads the reply and
session id back and copies the native trace out.

The container sees fixed paths, never the host's: the workspace at ``/workspace``, the state dir
(``HOME``) at ``/home/agent``, the traces dir at ``/agentcap/traces``, skills under
``/agentcap/skills/<name>``, tool dirs under ``/agentcap/tools/<name>``, other read-only dirs under
``/agentcap/ro/<name>``. So nothing the agent is told or writes down (its system prompt's working
directory, its session files, a replayed run's requests) holds the user's home, the run dir or the
run id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .agents import Agent, TurnInput
from .agents.base import HOME_IN, WORKSPACE_IN, fixed_targets
from .container import ContainerSpec, Mount, run_container
from .images import LABEL, ensure_image
from .podman import Podman

TRACES_IN = PurePosixPath("/agentcap/traces")
TOOLS_IN = PurePosixPath("/agentcap/tools")
READ_ONLY_IN = PurePosixPath("/agentcap/ro")


@dataclass
class TurnResult:
    returncode: int
    duration_s: float
    timed_out: bool
    session_id: str | None
    reply: str | None
    stdout: Path
    stderr: Path
    trace_files: list[Path] = field(default_factory=list)
    cost_usd: float | None = None  # reported by the harness (claude-code), else None
    num_turns: int | None = None  # the agent's own turns, reported by the harness
    killed_outside: bool = False  # its container was killed by someone else (container.KILLED_OUTSIDE)


def _read_only(dirs: Sequence[Path], targets: Sequence[PurePosixPath]) -> list[Mount]:
    return [Mount(d, read_only=True, target=str(target)) for d, target in zip(dirs, targets)]


def run_agent_turn(
    podman: Podman,
    agent: Agent,
    t: TurnInput,
    *,
    stdout: Path,
    stderr: Path,
    trace_dir: Path,
    forwards: Mapping[int, Path],
    timeout_s: float = 600.0,
    labels: Mapping[str, str] | None = None,
    read_only: Sequence[Path] = (),
    tool_dirs: Sequence[Path] = (),
    image: str | None = None,
) -> TurnResult:
    """Run turn ``t`` of ``agent``; ``forwards`` (port → unix socket) are its only network.

    ``read_only`` dirs are mounted read-only at ``/agentcap/ro/<name>``, ``t.skills`` at
    ``t.inside(skill)``; ``tool_dirs`` at ``/agentcap/tools/<name>``, first on the agent's PATH. ``image``: the agent's image tag when the caller has
    resolved it already (once per run); without it, it is resolved (and built if need be) here.
    """
    image = image or ensure_image(podman, agent.name)
    for d in (t.workspace, t.home, trace_dir):
        d.mkdir(parents=True, exist_ok=True)
    agent.configure(t)
    tools = fixed_targets(TOOLS_IN, tool_dirs)
    spec = ContainerSpec(
        image=image,
        command=agent.command(t),
        workdir=WORKSPACE_IN,
        stdout=stdout,
        stderr=stderr,
        env={"HOME": str(HOME_IN), "PWD": str(WORKSPACE_IN), "TERM": "dumb", "NO_COLOR": "1",
             **({"AGENTCAP_PATH_PREPEND": ":".join(map(str, tools))} if tool_dirs else {}), **agent.env(t)},
        mounts=[*(Mount(src, target=str(target)) for src, target in t.mounts().items() if src not in t.skills),
                Mount(trace_dir, target=str(TRACES_IN)),
                *_read_only(t.skills, [PurePosixPath(t.inside(p)) for p in t.skills]),
                *_read_only(tool_dirs, tools), *_read_only(read_only, fixed_targets(READ_ONLY_IN, read_only))],
        forwards=forwards,
        labels={f"{LABEL}.agent": agent.name, f"{LABEL}.turn": str(t.turn),
                **{(k if k.startswith(LABEL) else f"{LABEL}.{k}"): v for k, v in (labels or {}).items()}},
        timeout_s=timeout_s,
    )
    result = run_container(podman, spec)
    out = agent.parse(stdout.read_text(errors="replace"), stderr.read_text(errors="replace"), t)
    traces = agent.export_trace(t, out.session_id, trace_dir)
    return TurnResult(returncode=result.returncode, duration_s=result.duration_s, timed_out=result.timed_out,
                      session_id=out.session_id, reply=out.reply, stdout=stdout, stderr=stderr,
                      trace_files=traces, cost_usd=out.cost_usd, num_turns=out.num_turns,
                      killed_outside=result.killed_outside)


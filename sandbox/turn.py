"""One agent turn in a sandbox: adapter + image + container, as a library call.

The caller owns everything outside the container: the capture proxy and the per-turn key (already
registered), the MCP mocks, and the bridge whose sockets are the container's only way out. This
module puts the adapter's config in place, runs its command in a fresh container, reads the reply and
session id back and copies the native trace out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .agents import Agent, TurnInput
from .container import ContainerSpec, Mount, run_container
from .images import LABEL, ensure_image
from .podman import Podman


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

    ``read_only`` dirs (and ``t.skills``) are mounted read-only at their own paths; ``tool_dirs`` too,
    and they come first on the agent's PATH. ``image``: the agent's image tag when the caller has
    resolved it already (once per run); without it, it is resolved (and built if need be) here.
    """
    image = image or ensure_image(podman, agent.name)
    for d in (t.workspace, t.home, trace_dir):
        d.mkdir(parents=True, exist_ok=True)
    agent.configure(t)
    spec = ContainerSpec(
        image=image,
        command=agent.command(t),
        workdir=t.workspace,
        stdout=stdout,
        stderr=stderr,
        env={"HOME": str(t.home), "PWD": str(t.workspace), "TERM": "dumb", "NO_COLOR": "1",
             **({"AGENTCAP_PATH_PREPEND": ":".join(map(str, tool_dirs))} if tool_dirs else {}), **agent.env(t)},
        mounts=[Mount(t.workspace), Mount(t.home), Mount(trace_dir),
                *(Mount(p, read_only=True) for p in (*read_only, *t.skills, *tool_dirs))],
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
                      trace_files=traces, cost_usd=out.cost_usd, num_turns=out.num_turns)


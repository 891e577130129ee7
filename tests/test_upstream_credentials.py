"""An upstream URL that carries credentials is refused with exit 2, and the refusal never prints
them (stderr ends up in CI logs): every command that takes an upstream × every way a URL carries
a credential × flag or environment variable."""

from __future__ import annotations

import random
import string
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support import cli

REPO = Path(__file__).resolve().parents[1]
RNG = random.Random(7)
KEY = "".join(RNG.choice(string.ascii_letters + string.digits) for _ in range(32))

FORMS = {
    "user and password": f"https://me:{KEY}@api.example.invalid/v1",
    "key as the user": f"https://{KEY}@api.example.invalid",
    "key as the user, empty password": f"https://{KEY}:@api.example.invalid/v1",
    "percent-encoded password": f"http://me:{quote(KEY[:16] + '@/:' + KEY[16:], safe='')}@127.0.0.1:9",
}
COMMANDS = {
    "proxy": ["proxy", "--upstream", "{url}"],
    "run": ["run", "--agent", "hermes", "--model", "m", "--upstream", "{url}", "--tasks", str(REPO / "examples" / "tasks.txt")],
    "model serve": ["model", "serve", "--replay", "{tmp}", "--on-miss", "forward", "--upstream", "{url}"],
    "test": ["test", "--root", str(REPO / "examples" / "my-eval"), "--upstream", "{url}"],
}


@pytest.mark.parametrize("via", ["flag", "env"])
@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_credential_in_the_upstream_is_refused_and_never_printed(tmp_path, command, form, via):
    url = FORMS[form]
    args = [a.format(url=url, tmp=tmp_path) for a in COMMANDS[command]]
    env = {}
    if via == "env":
        i = args.index("--upstream")
        args = args[:i] + args[i + 2:]
        env["AGENTCAP_UPSTREAM"] = url
    r = cli.agentcap(*args, workspace=tmp_path, **env)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "must not carry credentials" in out and "***@" in out, out
    for secret in (KEY, KEY[:16], KEY[16:], quote(KEY[:16] + "@/:" + KEY[16:], safe="")):
        assert secret not in out, out

"""Checks shared by the mock tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from agentcap_addons.wire.util.yamlfile import ConfigError
from agentcap_cli.main import cli
from mcp_mocks.spec import load_spec


def assert_rejected(mock_dir: Path, where: str) -> None:
    """The mock in ``mock_dir`` does not load: the library's ConfigError names ``where`` (file:line: key),
    and ``agentcap mock tools`` exits 2 naming its file."""
    with pytest.raises(ConfigError) as e:
        load_spec(mock_dir)
    assert where in str(e.value), str(e.value)
    r = CliRunner().invoke(cli, ["mock", "tools", str(mock_dir)])
    assert r.exit_code == 2 and where.split(":")[0] in r.output

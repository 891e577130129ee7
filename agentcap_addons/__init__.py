"""Everything that runs inside mitmproxy (capture, key swap, lifecycle) and the pure
wire-format library it writes with (``agentcap_addons.wire``).

Scripts here work under ``mitmdump -s agentcap_addons/<script>.py`` and embedded alike; each
ends in ``addons = [...]``.
"""

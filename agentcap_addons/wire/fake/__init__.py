"""Upstreams for people without one: scripted replies and recorded runs (cassettes), and the
responders that answer a request from either — shared by ``agentcap model serve`` and the replay addon."""

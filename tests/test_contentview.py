"""The LLM contentview on real flows: three APIs streamed through a real capture proxy, saved with
mitmproxy's own flow writer (what mitmweb holds), then rendered by the view."""

from __future__ import annotations

import anthropic
import openai
from mitmproxy import contentviews, http
from mitmproxy.contentviews import Metadata
from mitmproxy.io import FlowReader
from mitmproxy.test import taddons, tflow

from agentcap_addons import contentview
from agentcap_addons.contentview import LLMContentview
from agentcap_cli.harness.modelserver import ModelServer, make_responder
from agentcap_cli.harness.proxy import start_proxy

TOOLS = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object",
                                                                          "properties": {"command": {"type": "string"}}}}}]


def meta(flow: http.HTTPFlow, message: http.Message | None = None) -> Metadata:
    return Metadata(flow=flow, http_message=message)


def render(view: LLMContentview, flow: http.HTTPFlow, message: http.Message) -> tuple[str, str]:
    title, _, text = view.prettify(message.raw_content or b"", meta(flow, message)).partition("\n")
    return title, text


def test_streamed_calls_of_the_three_apis_render_decoded(tmp_path):
    flows_file = tmp_path / "flows.mitm"
    with ModelServer(make_responder(script="shell-then-answer")) as server, \
            start_proxy(server.url, tmp_path / "run", events=True, sets={"save_stream_file": str(flows_file)}) as p:
        oai = openai.OpenAI(base_url=p.base_url + "/v1", api_key="x", max_retries=0)
        list(oai.chat.completions.create(model="m", stream=True, tools=TOOLS,
                                         messages=[{"role": "system", "content": "be brief"},
                                                   {"role": "user", "content": "list files"}]))
        list(oai.responses.create(model="m", stream=True, input="list files",
                                  tools=[{"type": "function", "name": "shell", "parameters": {"type": "object"}}]))
        with anthropic.Anthropic(base_url=p.base_url, api_key="x", max_retries=0).messages.stream(
                model="m", max_tokens=50, messages=[{"role": "user", "content": "list files"}],
                tools=[{"name": "Bash", "input_schema": {"type": "object"}}]) as s:
            s.until_done()
        for _ in range(3):
            p.events.wait_for(event="response")
    with open(flows_file, "rb") as f:
        flows = [fl for fl in FlowReader(f).stream() if isinstance(fl, http.HTTPFlow)]
    assert len(flows) == 3
    view = LLMContentview()
    for flow, tool in zip(flows, ["bash", "shell", "Bash"]):
        assert view.render_priority(flow.response.raw_content, meta(flow, flow.response)) > 1
        title, text = render(view, flow, flow.request)
        assert title.startswith("LLM request") and "── user ──" in text and "list files" in text
        title, text = render(view, flow, flow.response)
        assert title.startswith("LLM response") and "finish" in text
        assert "I'll look at the working directory first." in text  # the streamed text, reassembled
        assert f"→ {tool}(" in text and "ls -la" in text  # the tool call with its arguments
    assert "── system ──" in render(view, flows[0], flows[0].request)[1]


def test_other_flows_and_bad_bodies():
    view = LLMContentview()
    f = tflow.tflow(resp=True)
    f.request.path = "/index.html"
    assert view.render_priority(b"<html>", meta(f, f.response)) < 0
    f.request.path, f.request.method = "/v1/chat/completions", "POST"
    assert "not JSON" in view.prettify(b"not json", meta(f, f.request))
    f.response.content = b'{"error": {"message": "overloaded"}}'
    assert "overloaded" in view.prettify(f.response.content, meta(f, f.response))


def test_the_addon_registers_the_view_and_mitmproxy_picks_it_for_llm_calls():
    addon = contentview.LLMContentViewAddon()
    with taddons.context(addon):
        assert contentviews.registry["llm"] is addon.view
        f = tflow.tflow(resp=True)
        f.request.path, f.request.method = "/v1/chat/completions", "POST"
        f.request.content = b'{"model": "m", "messages": [{"role": "user", "content": "hello there"}]}'
        # mitmproxy's own selection and rendering (what mitmweb and the console call)
        shown = contentviews.prettify_message(f.request, f)
        assert shown.view_name == "LLM" and "hello there" in shown.text
        f.request.path = "/index.html"
        assert contentviews.prettify_message(f.request, f).view_name != "LLM"
    again = contentview.LLMContentViewAddon()  # a script reload: the new instance replaces the old one
    with taddons.context(again):
        assert contentviews.registry["llm"] is again.view
        assert list(contentviews.registry).count("llm") == 1

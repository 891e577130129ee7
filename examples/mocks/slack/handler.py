"""Stateful Slack tools that look things up: threads, reactions, history.

Each is ``fn(args, ctx)`` and changes ``ctx.state.data``, the live state (agenteval's handler
API); a ``ToolError`` (or any exception) answers a tool error and leaves the state as it was."""

from mcp_mocks import ToolError


def _channel(ctx, args, writing=False):
    channel_id = args.get("channel_id")
    channel = ctx.state.data["channels"].get(channel_id) if isinstance(channel_id, str) else None
    if channel is None:
        raise ToolError(f"channel_not_found: no channel {channel_id}")
    if writing and channel["archived"]:
        raise ToolError(f"is_archived: #{channel['name']} is archived")
    return channel


def _message(channel, ts):
    for m in channel["messages"]:
        if m["ts"] == ts:
            return m
    raise ToolError(f"message_not_found: no message with ts {ts}")


def tool_slack_reply_to_thread(args, ctx):
    channel = _channel(ctx, args, writing=True)
    parent = _message(channel, args.get("thread_ts"))
    if not args.get("text"):
        raise ToolError("no_text: the reply text is empty")
    state = ctx.state.data
    ts = f"1767225600.000{state['next_ts']}"
    state["next_ts"] += 1
    parent["replies"].append({"ts": ts, "user": "U03AGENT", "text": args["text"]})
    return {"ok": True, "channel": args["channel_id"], "ts": ts, "thread_ts": args["thread_ts"]}


def tool_slack_add_reaction(args, ctx):
    channel = _channel(ctx, args, writing=True)
    message = _message(channel, args.get("timestamp"))
    reaction = args.get("reaction")
    if not isinstance(reaction, str) or not reaction:
        raise ToolError("invalid_name: no reaction given")
    if reaction in message["reactions"]:
        raise ToolError("already_reacted")
    message["reactions"].append(reaction)
    return {"ok": True}


def tool_slack_get_channel_history(args, ctx):
    channel = _channel(ctx, args)
    limit = args.get("limit") or 10
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ToolError(f"invalid_limit: {limit!r}")
    return {"ok": True, "messages": list(reversed(channel["messages"]))[:limit]}

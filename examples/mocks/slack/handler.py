"""Stateful Slack tools that look things up: threads, reactions, history."""

from mcp_mocks import ToolError


def _channel(ctx, channel_id):
    channel = ctx.state["channels"].get(channel_id)
    if channel is None:
        raise ToolError(f"channel_not_found: {channel_id}")
    return channel


def _message(channel, ts):
    for m in channel["messages"]:
        if m["ts"] == ts:
            return m
    raise ToolError(f"message_not_found: no message with ts {ts}")


def tool_slack_reply_to_thread(args, ctx):
    channel = _channel(ctx, args["channel_id"])
    parent = _message(channel, args["thread_ts"])
    ts = f"1767225600.000{ctx.state['next_ts']}"
    ctx.state["next_ts"] += 1
    parent["replies"].append({"ts": ts, "user": "U03AGENT", "text": args["text"]})
    return {"ok": True, "channel": args["channel_id"], "ts": ts, "thread_ts": args["thread_ts"]}


def tool_slack_add_reaction(args, ctx):
    channel = _channel(ctx, args["channel_id"])
    message = _message(channel, args["timestamp"])
    if args["reaction"] in message["reactions"]:
        raise ToolError("already_reacted")
    message["reactions"].append(args["reaction"])
    return {"ok": True}


def tool_slack_get_channel_history(args, ctx):
    channel = _channel(ctx, args["channel_id"])
    limit = int(args.get("limit") or 10)
    return {"ok": True, "messages": list(reversed(channel["messages"]))[:limit]}

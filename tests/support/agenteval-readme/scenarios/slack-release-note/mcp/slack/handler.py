"""Stateful Slack behaviour: each handler is fn(args, ctx) and mutates ctx.state.data."""


def _channel(state, channel_id):
    return next((c for c in state["channels"] if c["id"] == channel_id or c["name"] == channel_id.lstrip("#")), None)


def tool_slack_send_message(args, ctx):
    channel = _channel(ctx.state.data, args.get("channel_id", ""))
    if channel is None:
        return {"ok": False, "error": "channel_not_found"}
    ts = f"{len(ctx.state.data['messages']) + 1}.000"
    ctx.state.data["messages"].append({"channel_id": channel["id"], "channel_name": channel["name"],
                                       "text": args.get("message", ""), "ts": ts})
    return {"ok": True, "channel": channel["id"], "ts": ts}

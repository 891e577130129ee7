"""The SSE parser against the event-stream rules real providers rely on."""

from agentcap_addons.wire.api.sse import SSEDecoder, parse_sse


def feed_all(chunks: list[bytes]):
    d = SSEDecoder()
    out = []
    for c in chunks:
        out += d.feed(c)
    return out + d.close(), d


def test_fields_event_id_retry():
    evs = parse_sse(b"event: message_start\nid: 7\nretry: 1500\ndata: {\"a\":1}\n\n")
    assert len(evs) == 1
    e = evs[0]
    assert (e.event, e.id, e.retry, e.data) == ("message_start", "7", 1500, '{"a":1}')


def test_default_event_name_and_no_space_after_colon():
    evs = parse_sse(b"data:x\n\ndata:  two spaces\n\n")
    assert [e.event for e in evs] == ["message", "message"]
    assert [e.data for e in evs] == ["x", " two spaces"]


def test_utf8_split_across_chunks_byte_by_byte():
    raw = "data: café 😀 ✓\n\n".encode()
    evs, _ = feed_all([raw[i : i + 1] for i in range(len(raw))])
    assert [e.data for e in evs] == ["café 😀 ✓"]


def test_crlf_cr_and_lf_line_ends():
    evs = parse_sse(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n")
    assert [e.data for e in evs] == ["a", "b", "c"]


def test_cr_at_chunk_end_then_lf_counts_once():
    # "data: a\r" + "\n" + "data: b\r\n\r\n": if CR and LF were counted twice, "a" would be
    # dispatched alone and "b" separately.
    evs, _ = feed_all([b"data: a\r", b"\ndata: b\r", b"\n\r\n"])
    assert [e.data for e in evs] == ["a\nb"]


def test_comments_and_keepalive_are_ignored():
    evs, d = feed_all([b": keep-alive\n\n", b":ping\ndata: x\n\n", b": OPENROUTER PROCESSING\n\n"])
    assert [e.data for e in evs] == ["x"]
    assert d.comments == 3


def test_multiline_data_joined_with_newline():
    assert parse_sse(b"data: line1\ndata: line2\n\n")[0].data == "line1\nline2"


def test_done_sentinel_is_an_event():
    evs = parse_sse(b"data: {\"x\":1}\n\ndata: [DONE]\n\n")
    assert [e.data for e in evs] == ['{"x":1}', "[DONE]"]


def test_bom_is_stripped_once():
    assert parse_sse("\ufeffdata: x\n\n".encode())[0].data == "x"


def test_last_event_without_blank_line_is_kept_on_close():
    assert [e.data for e in parse_sse(b"data: a\n\ndata: b")] == ["a", "b"]


def test_every_two_way_split_gives_the_same_events():
    raw = "event: e\r\ndata: é1\r\n\r\n: c\ndata: 😀\rdata: z\r\r".encode()
    want = [(e.event, e.data) for e in parse_sse(raw)]
    assert want == [("e", "é1"), ("message", "😀\nz")]
    for i in range(len(raw) + 1):
        evs, _ = feed_all([raw[:i], raw[i:]])
        assert [(e.event, e.data) for e in evs] == want, i


def test_invalid_utf8_is_replaced_not_fatal():
    assert parse_sse(b"data: \xff\n\n")[0].data == "\ufffd"


def test_the_fast_path_agrees_with_the_full_parser():
    from agentcap_addons.wire.api.sse import SSEDecoder, _simple_events, parse_sse

    samples = [
        'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n',
        "event: message_start\ndata: {}\n\nevent: ping\ndata: {}\n\n",
        "data: line one\ndata: line two\n\n\n\ndata: x",  # multi-line data, extra blank lines, cut at the end
        "data:no-space\n\nevent:\ndata: e\n\n",
        "id: 7\ndata: a\n\n", ": comment\ndata: a\n\n", "data: a\r\n\r\n",  # full parser only
    ]
    for text in samples:
        dec = SSEDecoder()
        full = dec.feed(text.encode()) + dec.close()
        assert [(e.event, e.data) for e in parse_sse(text)] == [(e.event, e.data) for e in full], text
    assert _simple_events(samples[-1]) is None and _simple_events(samples[0]) is not None

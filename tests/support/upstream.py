"""A real, scriptable HTTP/1.1 upstream on 127.0.0.1 for proxy tests and bench/proxy.py.

Raw asyncio sockets (not a framework) so a test controls every byte and every moment: chunked
SSE, gates that hold the stream until the test says go, gzip, error statuses, a reset in the
middle of a stream, silence. The first path segment picks the behaviour:

    /sse/…      SSE from ``Upstream.sse_events`` (default: a small chat completion stream)
    /gate/…     like /sse but waits for ``Upstream.gate`` before the last event
    /json/…     a JSON chat completion (gzip when the client accepts it and ``gzip`` is set)
    /held/…     the JSON chat completion, but nothing at all (not even headers) until ``Upstream.gate``
    /status/N/… status N with a JSON error body
    /limited/N/RA/…  429 with ``Retry-After: RA`` (seconds; ``date`` for an HTTP date 1 s ahead; ``none``
                for no header) to the first N requests of this prefix, then the JSON chat completion
                ``Upstream.chat_json``; N ``always`` never stops refusing
    /text/…     a non-JSON (HTML) body
    /bytes/…    SSE whose bytes are not valid UTF-8
    /reset/…    two SSE events, then the connection is dropped
    /hang/…     one SSE event, then silence (until the server stops)
    /paced/MS/… SSE with MS milliseconds between events
    /ws/…       a WebSocket speaking the Responses API events
    anything else: 200 {"ok": true}

Every request is recorded in ``Upstream.received`` (method, path, headers, body).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import email.utils
import gzip
import hashlib
import json
import struct
import threading
import time
from dataclasses import dataclass, field


def chat_sse_events(n: int = 5, text: str = "hello") -> list[bytes]:
    events = []
    for i in range(n):
        chunk = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": "test-model",
            "choices": [{"index": 0, "delta": {"content": f"{text}{i} "}, "finish_reason": None}],
        }
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    final = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "test-model",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n},
    }
    events.append(b"data: " + json.dumps(final).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


CHAT_JSON = {
    "id": "chatcmpl-2",
    "object": "chat.completion",
    "model": "test-model",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi there"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    sse_events: list[bytes] = field(default_factory=chat_sse_events)
    chunk_delay: float = 0.0
    gzip: bool = False
    chat_json: dict = field(default_factory=lambda: copy.deepcopy(CHAT_JSON))  # (a test may change it: never the constant)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gate = threading.Event()
        self.sent_last_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0
        self.refused: dict[str, int] = {}  # /limited/N/RA → how many 429s it has sent

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Upstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._stopping = asyncio.Event()
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_until_complete(self._stopping.wait())
            self._server.close()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:  # keep-alive connections still waiting for a next request
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="test-upstream")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._stopping:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.gate.set()
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ HTTP
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                self.received.append(Received(method, path, headers, body))
                keep = await self._respond(method, path, headers, body, reader, writer)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _wait_stop(self, seconds: float) -> None:
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _respond(self, method, path, headers, body, reader, writer) -> bool:
        mode = path.strip("/").split("/", 1)[0]
        if mode == "ws":
            await self._websocket(headers, reader, writer)
            return False
        if mode in ("sse", "gate", "bytes", "reset", "hang", "paced"):
            events = list(self.sse_events)
            delay = self.chunk_delay
            if mode == "paced":
                delay = int(path.strip("/").split("/")[1]) / 1000
            if mode == "bytes":
                events = [b"data: {\"x\": \"caf\xe9\"}\n\n", b"data: \xff\xfe\n\n"]
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            await writer.drain()
            for i, ev in enumerate(events):
                last = i == len(events) - 1
                if mode == "gate" and last:
                    await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 30)
                if mode == "reset" and i == 2:
                    writer.transport.abort()
                    return False
                if mode == "hang" and i == 1:
                    await self._wait_stop(60)
                    writer.transport.abort()
                    return False
                if delay and i:
                    await asyncio.sleep(delay)
                writer.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                await writer.drain()
                if last:
                    self.sent_last_at = time.time()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if mode == "limited":
            mode = self._limited(path, writer)
        if mode == "held":
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 30)
            mode = "json"
        if mode == "json":
            payload = json.dumps(self.chat_json).encode()
            extra = b""
            if self.gzip and "gzip" in headers.get("accept-encoding", ""):
                payload = gzip.compress(payload)
                extra = b"content-encoding: gzip\r\n"
            self._plain(writer, 200, "application/json", payload, extra)
        elif mode == "refused":
            pass
        elif mode == "status":
            code = int(path.strip("/").split("/")[1])
            payload = json.dumps({"error": {"message": f"status {code}", "type": "test"}}).encode()
            self._plain(writer, code, "application/json", payload)
        elif mode == "text":
            self._plain(writer, 200, "text/html", b"<html>not json</html>")
        else:
            self._plain(writer, 200, "application/json", b'{"ok": true}')
        await writer.drain()
        return True

    def _limited(self, path: str, writer) -> str:
        """The /limited/N/RA mode: "refused" after writing a 429, "json" once N were sent."""
        _, n, ra = path.strip("/").split("/")[:3]
        prefix = f"/limited/{n}/{ra}"
        sent = self.refused.get(prefix, 0)
        if n != "always" and sent >= int(n):
            return "json"
        self.refused[prefix] = sent + 1
        value = {"none": None, "date": email.utils.formatdate(time.time() + 1, usegmt=True)}.get(ra, ra)
        extra = f"retry-after: {value}\r\n".encode() if value is not None else b""
        payload = json.dumps({"error": {"message": "rate limited", "type": "rate_limit"}}).encode()
        self._plain(writer, 429, "application/json", payload, extra)
        return "refused"

    @staticmethod
    def _plain(writer, code: int, ctype: str, payload: bytes, extra: bytes = b"") -> None:
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n%s"
            % (code, ctype.encode(), len(payload), extra, payload)
        )

    # ------------------------------------------------------------ WebSocket (RFC 6455, minimal)
    async def _websocket(self, headers, reader, writer) -> None:
        accept = base64.b64encode(
            hashlib.sha1((headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-accept: " + accept + b"\r\n\r\n"
        )
        await writer.drain()
        while True:
            opcode, payload = await _ws_read(reader)
            if opcode == 8:
                writer.write(_ws_frame(8, payload[:2]))
                await writer.drain()
                return
            if opcode != 1:
                continue
            req = json.loads(payload)
            for ev in responses_ws_events(req.get("model", "m"), req.get("input", "")):
                writer.write(_ws_frame(1, json.dumps(ev).encode()))
            await writer.drain()


def responses_ws_events(model: str, prompt: object) -> list[dict]:
    resp = {"id": "resp_1", "object": "response", "model": model, "status": "in_progress", "output": []}
    item = {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}
    done = dict(resp, status="completed", output=[item], usage={"input_tokens": 4, "output_tokens": 1})
    return [
        {"type": "response.created", "response": resp},
        {"type": "response.output_text.delta", "output_index": 0, "delta": "ok"},
        {"type": "response.completed", "response": done},
    ]


async def _ws_read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b1, b2 = await reader.readexactly(2)
    n = b2 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4) if b2 & 0x80 else b"\0\0\0\0"
    data = bytearray(await reader.readexactly(n))
    for i in range(n):
        data[i] ^= mask[i % 4]
    return b1 & 0x0F, bytes(data)


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def main() -> None:
    """``python -m tests.support.upstream``: serve until stdin closes; print the port first."""
    import sys

    with Upstream() as up:
        print(up.port, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()

"""Server-sent events, parsed incrementally as the HTML standard describes the event stream.

Handles what real providers put on the wire: UTF-8 split across network chunks, CRLF / CR / LF
line ends (a CR at the end of one chunk and the LF at the start of the next count once), a BOM,
comment / keep-alive lines (``: ping``), multi-line ``data``, and ``data: [DONE]`` (an ordinary
event here; API decoders give it meaning).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_EOL = re.compile(r"\r\n|\r|\n")


@dataclass
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed bytes as they arrive; get the complete events each chunk finished."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""
        self._pending_cr = False
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return self._feed_text(self._utf8.decode(chunk))

    def close(self) -> list[SSEEvent]:
        """End of stream. Unlike a browser, dispatch a last event that lacks its blank line: a
        capture of a truncated stream should still show what arrived."""
        events = self._feed_text(self._utf8.decode(b"", final=True))
        if self._buf:
            line, self._buf = self._buf, ""
            self._line(line, events)
        if self._data:
            self._dispatch(events)
        return events

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if not self._started and text:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = False
        events: list[SSEEvent] = []
        buf = self._buf + text
        # split at CRLF, CR or LF (the standard's line ends; str.splitlines would also split at
        # form feeds and Unicode separators inside data). The last piece is an unfinished line.
        lines = _EOL.split(buf)
        self._buf = lines.pop()
        if buf.endswith("\r"):
            self._pending_cr = True  # its LF may open the next chunk: that LF ends nothing
        for line in lines:
            self._line(line, events)
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if line == "":
            self._dispatch(events)
            return
        if line.startswith(":"):
            self.comments += 1
            return
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._last_id = value
        elif field == "retry":
            if value.isdigit():
                self._retry = int(value)

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._data:
            events.append(
                SSEEvent(
                    data="\n".join(self._data),
                    event=self._event or "message",
                    id=self._last_id,
                    retry=self._retry,
                )
            )
        self._data = []
        self._event = ""


def parse_sse(data: bytes | str) -> list[SSEEvent]:
    """All events of a complete stream."""
    text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
    fast = _simple_events(text)
    if fast is not None:
        return fast
    dec = SSEDecoder()
    return dec.feed(text.encode("utf-8")) + dec.close()


def _simple_events(text: str) -> list[SSEEvent] | None:
    """The common shape, parsed quickly: LF line ends only, blocks of ``event:`` / ``data:`` lines
    separated by blank lines, no comments, ids, retries or BOM. None when the stream is anything
    else (the full parser then handles it)."""
    if "\r" in text or text.startswith("\ufeff") or "\n:" in text or text.startswith(":"):
        return None
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        data: list[str] = []
        event = "message"
        for line in block.split("\n"):
            if line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
            elif line.startswith("event:"):
                event = line[7:] if line.startswith("event: ") else line[6:]
            elif line:
                return None  # id:, retry:, or a field without value: leave it to the full parser
        if data:
            events.append(SSEEvent(data="\n".join(data), event=event or "message"))
    return events

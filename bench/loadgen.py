"""A lean HTTP/1.1 load generator on raw asyncio sockets, shared by the benches.

httpx tops out near the rate of the servers measured here on 2 cores, which would measure the
client instead of the server; this one spends a few microseconds per request.
"""

from __future__ import annotations

import asyncio
import time


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    """One keep-alive request / response (chunked or with a length), read to its end; the status."""
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    low = head.lower()
    if b"transfer-encoding: chunked" in low:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif b"content-length:" in low:
        length = int(low.split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    return status


def post(host: str, path: str, body: bytes) -> bytes:
    return (b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (path.encode(), host.encode(), len(body), body))


async def throughput(base: str, requests: list[tuple[str, bytes]], clients: int, per_client: int) -> tuple[float, int]:
    """``clients`` connections, each sending ``per_client`` requests back to back (cycling through
    ``requests``, client i starting at offset i). Returns (requests per second, requests sent)."""
    host, port = base.removeprefix("http://").split(":")
    reqs = [post(host, path, body) for path, body in requests]
    conns = [await asyncio.open_connection(host, int(port)) for _ in range(clients)]
    n = len(reqs)

    async def worker(i: int, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> int:
        for k in range(per_client):
            status = await exchange(r, w, reqs[(i * per_client + k) % n])
            assert status == 200, status
        return per_client

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(worker(i, r, w) for i, (r, w) in enumerate(conns)))
    dt = time.perf_counter() - t0
    for _, w in conns:
        w.close()
    return sum(counts) / dt, sum(counts)

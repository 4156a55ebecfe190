#!/usr/bin/env python3
"""asyncio_echo: an ordinary asyncio streams program (epoll underneath) for
the integration tests. It knows nothing about psinterpose.

    asyncio_echo.py server --port P --conns N
        accept N connections; on each, echo length-prefixed messages
        (8-byte little-endian length + payload) until EOF, then exit
    asyncio_echo.py client --port P --sizes S1,S2,... --conns N --out PREFIX
        open N connections at once; on each send every message (random
        payload) and read its echo; PREFIX.I.sent / PREFIX.I.got receive
        every byte sent and read on connection I

Exit status 0, or 1 with a message on stderr (echo mismatch, short read).
"""
import asyncio
import os
import sys

MiB = 1 << 20


def size(s):
    s = s.strip()
    if s[-1:] in "Kk":
        return int(s[:-1]) * 1024
    if s[-1:] in "Mm":
        return int(s[:-1]) * MiB
    return int(s)


async def serve(port, conns):
    done = asyncio.Event()
    left = [conns]
    failures = []

    async def handle(reader, writer):
        try:
            while True:
                try:
                    hdr = await reader.readexactly(8)
                except asyncio.IncompleteReadError as e:
                    if e.partial:
                        raise
                    break
                n = int.from_bytes(hdr, "little")
                body = await reader.readexactly(n)
                writer.write(hdr + body)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except Exception as e:  # reported at exit
            failures.append(repr(e))
        left[0] -= 1
        if left[0] == 0:
            done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await done.wait()
    if failures:
        raise SystemExit("asyncio_echo server: " + "; ".join(failures))


async def one_client(port, sizes, prefix, i):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    with open("%s.%d.sent" % (prefix, i), "wb") as sent, open("%s.%d.got" % (prefix, i), "wb") as got:
        for k, n in enumerate(sizes):
            hdr = n.to_bytes(8, "little")
            body = os.urandom(n)
            writer.write(hdr + body)
            await writer.drain()
            sent.write(hdr + body)
            back = await reader.readexactly(8 + n)
            got.write(back)
            if back != hdr + body:
                raise SystemExit("conn %d message %d (%d bytes): echo differs" % (i, k, n))
        writer.write_eof()
        rest = await reader.read()
        if rest:
            raise SystemExit("conn %d: %d unexpected bytes after the last echo" % (i, len(rest)))
    writer.close()
    await writer.wait_closed()


async def client(port, sizes, conns, prefix):
    await asyncio.gather(*(one_client(port, sizes, prefix, i) for i in range(conns)))


def main(argv):
    mode = argv[0]
    opts = dict(zip(argv[1::2], argv[2::2]))
    port = int(opts["--port"])
    conns = int(opts.get("--conns", "1"))
    if mode == "server":
        asyncio.run(serve(port, conns))
    else:
        sizes = [size(x) for x in opts["--sizes"].split(",")]
        asyncio.run(client(port, sizes, conns, opts["--out"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

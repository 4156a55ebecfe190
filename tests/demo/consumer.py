#!/usr/bin/env python3
"""consumer: an ordinary program that receives a payload over TCP.

    consumer.py --port P --expect 256M --out FILE

Accepts one connection and reads until EOF into memory (recv_into a buffer
of --expect bytes, grown if more arrives), then notes t1 (CLOCK_MONOTONIC),
closes, and writes to FILE one JSON object: the sha256 of what it received,
the byte count and t1. The hash is taken after t1, so the timing is the
transfer alone. Knows nothing about psinterpose.
"""
import argparse
import hashlib
import json
import socket
import time


def size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:].upper(), 1)
    return int(s[:-1] if mult > 1 else s) * mult


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--expect", default="256M")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    buf = bytearray(size(a.expect))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(1)
    c, _ = ls.accept()
    off = 0
    while True:
        if off == len(buf):
            buf.extend(bytearray(1 << 24))
        n = c.recv_into(memoryview(buf)[off:off + (1 << 24)])
        if n == 0:
            break
        off += n
    t1 = time.monotonic()
    c.close()
    digest = hashlib.sha256(memoryview(buf)[:off]).hexdigest()
    with open(a.out, "w") as f:
        json.dump({"sha256": digest, "bytes": off, "t1": t1}, f)


if __name__ == "__main__":
    main()

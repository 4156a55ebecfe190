#!/usr/bin/env python3
"""producer: an ordinary program that sends a large payload over TCP.

    producer.py --port P --total 256M --write 16M --out FILE

Makes the payload first (random bytes, so no write repeats another), then
connects, sends it in writes of --write bytes with sendall, half-closes and
waits for the peer to close. Writes to FILE one JSON object: the sha256 of
what it sent, the byte count, and t0 (CLOCK_MONOTONIC just before connect).
Knows nothing about psinterpose.
"""
import argparse
import hashlib
import json
import os
import socket
import time


def size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:].upper(), 1)
    return int(s[:-1] if mult > 1 else s) * mult


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--total", default="256M")
    p.add_argument("--write", default="16M")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    total, step = size(a.total), size(a.write)
    data = memoryview(os.urandom(total))
    digest = hashlib.sha256(data).hexdigest()

    t0 = time.monotonic()
    s = socket.create_connection((a.host, a.port))
    for off in range(0, total, step):
        s.sendall(data[off:off + step])
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # the consumer closes once it has everything
    s.close()
    with open(a.out, "w") as f:
        json.dump({"sha256": digest, "bytes": total, "t0": t0}, f)


if __name__ == "__main__":
    main()

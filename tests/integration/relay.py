#!/usr/bin/env python3
"""relay: a plain TCP relay that counts the bytes it carries.

Run it WITHOUT LD_PRELOAD: it stands for any unmodified proxy in the path.

    relay.py --listen PORT --target HOST:PORT --counts FILE [--conns N]

Accepts N connections (default 1, 0 = until SIGTERM), connects each to the
target and forwards both directions, passing a half-close (EOF) on. When the
last connection is done, or on SIGTERM/SIGINT, it writes to FILE one JSON
object: {"c2s": bytes client->target, "s2c": bytes target->client,
"conns": connections served}, and exits.
"""
import argparse
import json
import os
import signal
import socket
import sys
import threading

counts = {"c2s": 0, "s2c": 0, "conns": 0}
lock = threading.Lock()


def pump(src, dst, key):
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    try:
        while True:
            n = src.recv_into(view)
            if n == 0:
                break
            dst.sendall(view[:n])
            with lock:
                counts[key] += n
    except OSError as e:
        print("relay: %s: %s" % (key, e), file=sys.stderr)
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(client, target):
    upstream = socket.create_connection(target)
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    a = threading.Thread(target=pump, args=(client, upstream, "c2s"))
    b = threading.Thread(target=pump, args=(upstream, client, "s2c"))
    a.start()
    b.start()
    a.join()
    b.join()
    client.close()
    upstream.close()


def write_counts(path):
    with lock:
        data = json.dumps(counts)
    with open(path + ".tmp", "w") as f:
        f.write(data + "\n")
    # rename: a reader polling for the file never sees half of it
    os.replace(path + ".tmp", path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--counts", required=True)
    p.add_argument("--conns", type=int, default=1)
    a = p.parse_args()
    host, _, port = a.target.rpartition(":")
    target = (host, int(port))

    def on_signal(signum, frame):
        write_counts(a.counts)
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.listen))
    ls.listen(16)
    threads = []
    served = 0
    while a.conns == 0 or served < a.conns:
        c, _ = ls.accept()
        served += 1
        with lock:
            counts["conns"] += 1
        t = threading.Thread(target=serve, args=(c, target))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    write_counts(a.counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""manyconns: one process, many concurrent connections, poll-based
(selectors.PollSelector), non-blocking sockets. Knows nothing of psinterpose.

    manyconns.py server PORT N     echo every connection until its EOF, then
                                   close it; exit 0 after N connections
    manyconns.py client PORT N     open N connections at once; connection i
                                   sends its own payload (size(i) bytes from
                                   random.Random(i)), half-closes, reads the
                                   echo to EOF; exit 0 if every echo is
                                   byte-identical, 4 otherwise
"""
import random
import selectors
import socket
import sys

R, W = selectors.EVENT_READ, selectors.EVENT_WRITE


def size(i):
    # every 10th payload is above the test's threshold (64K): a token
    return 100 * 1024 + i if i % 10 == 0 else (i * 37) % 3000 + 1


def server(port, n):
    sel = selectors.PollSelector()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1024)
    ls.setblocking(False)
    sel.register(ls, R, None)
    done = accepted = echoed = 0
    while done < n:
        for key, ev in sel.select():
            if key.data is None:
                while accepted < n:
                    try:
                        s, _ = ls.accept()
                    except BlockingIOError:
                        break
                    s.setblocking(False)
                    accepted += 1
                    sel.register(s, R, {"out": bytearray(), "eof": False})
                continue
            s, st = key.fileobj, key.data
            if ev & R:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    data = None
                if data == b"":
                    st["eof"] = True
                elif data:
                    st["out"] += data
                    echoed += len(data)
            if st["out"]:
                try:
                    k = s.send(st["out"])
                    del st["out"][:k]
                except BlockingIOError:
                    pass
            if st["eof"] and not st["out"]:
                sel.unregister(s)
                s.close()
                done += 1
                continue
            want = (0 if st["eof"] else R) | (W if st["out"] else 0)
            sel.modify(s, want, st)
    print("server: %d connections, %d bytes echoed" % (done, echoed))


def client(port, n):
    sel = selectors.PollSelector()
    conns = []
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        st = {"i": i, "payload": random.Random(i).randbytes(size(i)), "off": 0,
              "got": bytearray(), "shut": False}
        conns.append(st)
        sel.register(s, W, st)
    left, bad = n, 0
    while left:
        for key, ev in sel.select():
            s, st = key.fileobj, key.data
            if ev & W and not st["shut"]:
                try:
                    st["off"] += s.send(st["payload"][st["off"]:st["off"] + (1 << 20)])
                except BlockingIOError:
                    pass
                if st["off"] == len(st["payload"]):
                    s.shutdown(socket.SHUT_WR)
                    st["shut"] = True
            if ev & R:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    data = None
                if data == b"":
                    sel.unregister(s)
                    s.close()
                    left -= 1
                    if bytes(st["got"]) != st["payload"]:
                        bad += 1
                        print("client: connection %d: sent %d bytes, echo has %d, differs"
                              % (st["i"], len(st["payload"]), len(st["got"])), file=sys.stderr)
                    continue
                if data:
                    st["got"] += data
            sel.modify(s, R if st["shut"] else R | W, st)
    total = sum(len(c["payload"]) for c in conns)
    print("client: %d connections, %d bytes each way, %d bad" % (n, total, bad))
    sys.exit(4 if bad else 0)


if __name__ == "__main__":
    {"server": server, "client": client}[sys.argv[1]](int(sys.argv[2]), int(sys.argv[3]))

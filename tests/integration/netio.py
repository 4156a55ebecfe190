#!/usr/bin/env python3
"""netio: an ordinary, unmodified network program for the integration tests.

It runs a list of steps on one stream: a TCP or Unix connection (as server or
client) or the process's own stdin/stdout (pipe mode). It knows nothing about
psinterpose; the tests run it with or without LD_PRELOAD.

    netio.py server (--port P [--host H] | --unix PATH) [options] STEP...
    netio.py client (--port P [--host H] | --unix PATH) [options] STEP...
    netio.py pipe [options] STEP...          (writes fd 1, reads fd 0)

Steps:
    send:FILE[:CHUNK]     write FILE's bytes, CHUNK bytes per call (default --chunk)
    recv:OUT              read until EOF, write what was read to OUT
    recvn:N:OUT           read exactly N bytes into OUT (EOF before N is an error)
    shut                  shutdown(SHUT_WR)
    duplex:FILE:OUT       send FILE (then shut) from a thread while reading to EOF
    wait:PATH             wait (bounded, 60 s) until PATH exists
    touch:PATH            create PATH (a signal to the test)
    echo-client:SIZES:SENT:GOT
                          for each size (comma list, K/M suffixes) send one
                          message (8-byte little-endian length + random
                          payload) and read the echo, which must be identical;
                          every byte sent goes to SENT, every byte read to GOT
    echo-server:SENT:GOT  echo messages until EOF at a message boundary

Options:
    --chunk N     bytes per write call for send (default 16M)
    --api send|write
                  send/recv via the socket API (sendall/recv_into: send(2),
                  recv(2)) or via os.write/os.readv (write(2), read(2))
    --rbuf N      bytes asked per read call (default 16M)
    --result FILE on exit, write one JSON object: ok, errno, step, message

Exit status: 0 all steps done, 3 an OSError (errno in --result), 4 a data
error (echo mismatch, short read), 2 bad usage.
"""
import json
import os
import socket
import sys
import threading
import time

MiB = 1 << 20


def size(s):
    s = s.strip()
    mult = 1
    if s[-1:] in "Kk":
        mult, s = 1024, s[:-1]
    elif s[-1:] in "Mm":
        mult, s = MiB, s[:-1]
    return int(s) * mult


class DataError(Exception):
    pass


class Stream:
    """One byte stream: a socket, or fd 0/1 in pipe mode."""

    def __init__(self, sock, api, rbuf, chunk):
        self.sock = sock
        self.api = api if sock is not None else "write"
        self.rfd = sock.fileno() if sock is not None else 0
        self.wfd = sock.fileno() if sock is not None else 1
        self.buf = bytearray(rbuf)
        self.chunk = chunk

    def write_all(self, data, chunk=None):
        chunk = chunk or self.chunk
        mv = memoryview(data)
        for off in range(0, len(mv), chunk):
            piece = mv[off:off + chunk]
            if self.api == "send":
                self.sock.sendall(piece)
            else:
                while len(piece):
                    n = os.write(self.wfd, piece)
                    piece = piece[n:]

    def read_some(self, limit=None):
        """Returns the bytes of one read call (b"" at EOF)."""
        view = memoryview(self.buf)
        if limit is not None:
            view = view[:limit]
        if self.api == "send":
            n = self.sock.recv_into(view)
        else:
            n = os.readv(self.rfd, [view])
        return bytes(view[:n])

    def read_exact(self, n):
        parts = []
        while n > 0:
            b = self.read_some(min(n, len(self.buf)))
            if not b:
                raise DataError("EOF with %d bytes still expected" % n)
            parts.append(b)
            n -= len(b)
        return b"".join(parts)

    def read_eof(self, out):
        total = 0
        while True:
            b = self.read_some()
            if not b:
                return total
            out.write(b)
            total += len(b)

    def shut(self):
        if self.sock is not None:
            self.sock.shutdown(socket.SHUT_WR)
        else:
            os.close(1)


def wait_path(path, secs=60):
    end = time.monotonic() + secs
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise DataError("timed out waiting for " + path)
        time.sleep(0.01)


def echo_client(st, sizes, sent_path, got_path):
    with open(sent_path, "wb") as sent, open(got_path, "wb") as got:
        for i, n in enumerate(sizes):
            hdr = n.to_bytes(8, "little")
            body = os.urandom(n)
            # Alternate one write for header and body with two writes, so a
            # small record and a large one follow each other on the stream.
            if i % 2 == 0:
                st.write_all(hdr + body)
            else:
                st.write_all(hdr)
                st.write_all(body)
            sent.write(hdr)
            sent.write(body)
            back = st.read_exact(8)
            got.write(back)
            if back != hdr:
                raise DataError("message %d: echoed header %r, sent %r" % (i, back, hdr))
            echoed = st.read_exact(n)
            got.write(echoed)
            if echoed != body:
                raise DataError("message %d (%d bytes): echo differs" % (i, n))
    st.shut()
    rest = st.read_some()
    if rest:
        raise DataError("%d unexpected bytes after the last echo" % len(rest))


def echo_server(st, sent_path, got_path):
    with open(sent_path, "wb") as sent, open(got_path, "wb") as got:
        i = 0
        while True:
            first = st.read_some(8)
            if not first:
                break
            hdr = first + (st.read_exact(8 - len(first)) if len(first) < 8 else b"")
            got.write(hdr)
            n = int.from_bytes(hdr, "little")
            body = st.read_exact(n)
            got.write(body)
            if i % 2 == 0:
                st.write_all(hdr)
                st.write_all(body)
            else:
                st.write_all(hdr + body)
            sent.write(hdr)
            sent.write(body)
            i += 1
    st.shut()


def run_step(st, step):
    kind, _, arg = step.partition(":")
    if kind == "send":
        path, _, chunk = arg.partition(":")
        with open(path, "rb") as f:
            data = f.read()
        st.write_all(data, size(chunk) if chunk else None)
    elif kind == "recv":
        with open(arg, "wb") as out:
            st.read_eof(out)
    elif kind == "recvn":
        n, _, path = arg.partition(":")
        data = st.read_exact(size(n))
        with open(path, "wb") as out:
            out.write(data)
    elif kind == "shut":
        st.shut()
    elif kind == "duplex":
        src, _, path = arg.partition(":")
        with open(src, "rb") as f:
            data = f.read()
        failure = []

        def sender():
            try:
                st.write_all(data)
                st.shut()
            except BaseException as e:  # reported by the main thread
                failure.append(e)

        t = threading.Thread(target=sender)
        t.start()
        with open(path, "wb") as out:
            st.read_eof(out)
        t.join()
        if failure:
            raise failure[0]
    elif kind == "wait":
        wait_path(arg)
    elif kind == "touch":
        open(arg, "wb").close()
    elif kind == "echo-client":
        spec, sent, got = arg.split(":")
        echo_client(st, [size(x) for x in spec.split(",")], sent, got)
    elif kind == "echo-server":
        sent, got = arg.split(":")
        echo_server(st, sent, got)
    else:
        raise SystemExit("netio: unknown step " + step)


def main(argv):
    if not argv or argv[0] not in ("server", "client", "pipe"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, args = argv[0], argv[1:]
    opts = {"--host": "127.0.0.1", "--port": None, "--unix": None, "--chunk": "16M",
            "--api": "send", "--rbuf": "16M", "--result": None}
    steps = []
    while args:
        a = args.pop(0)
        if a in opts:
            opts[a] = args.pop(0)
        else:
            steps.append(a)

    result = {"ok": False, "errno": None, "step": None, "message": ""}
    code = 0
    step = None
    try:
        sock = None
        if mode != "pipe":
            if opts["--unix"]:
                fam, addr = socket.AF_UNIX, opts["--unix"]
            else:
                fam, addr = socket.AF_INET, (opts["--host"], int(opts["--port"]))
            if mode == "server":
                ls = socket.socket(fam, socket.SOCK_STREAM)
                if fam == socket.AF_INET:
                    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                ls.bind(addr)
                ls.listen(1)
                sock, _ = ls.accept()
                ls.close()
            else:
                sock = socket.socket(fam, socket.SOCK_STREAM)
                sock.connect(addr)
        st = Stream(sock, opts["--api"], size(opts["--rbuf"]), size(opts["--chunk"]))
        for step in steps:
            run_step(st, step)
        if sock is not None:
            sock.close()
        result["ok"] = True
    except OSError as e:
        result.update(errno=e.errno, step=step, message=str(e))
        print("netio %s: step %s: OSError errno %s: %s" % (mode, step, e.errno, e),
              file=sys.stderr)
        code = 3
    except DataError as e:
        result.update(step=step, message=str(e))
        print("netio %s: step %s: %s" % (mode, step, e), file=sys.stderr)
        code = 4
    if opts["--result"]:
        with open(opts["--result"], "w") as f:
            json.dump(result, f)
            f.write("\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Programs for t_dryrun.sh: a writer, its readers and a non-blocking writer,
with payloads known exactly (seeded), so a dry run's counts can be checked.

  dryrun_prog.py expect DIR           the payload files the readers must get
  dryrun_prog.py receiver PORT OUT    TCP: accept once, save all, reply 1500 B
  dryrun_prog.py writer PORT          stdout: 3 x 2 MiB + 5 x 1 KiB (os.write);
                                      TCP: 2 x 3 MiB + 4 x 100 B (sendall)
  dryrun_prog.py reader OUT           stdin to OUT
  dryrun_prog.py nbwriter             stdout made non-blocking: 4 MiB continued
                                      by pointer (memoryview), then 3 MiB
                                      continued by copies (bytes slices)
  dryrun_prog.py slowreader OUT       reads stdin slowly at first, to OUT

It knows nothing about psinterpose."""
import os
import random
import select
import socket
import sys
import time

KiB, MiB = 1024, 1024 * 1024


def blob(seed, n):
    return random.Random(seed).randbytes(n)


PIPE_SENDS = [blob(1, 2 * MiB), blob(2, 2 * MiB), blob(3, 2 * MiB)] + [blob(10 + i, KiB) for i in range(5)]
TCP_SENDS = [blob(20, 3 * MiB), blob(21, 3 * MiB)] + [blob(30 + i, 100) for i in range(4)]
REPLY = blob(40, 1500)
NB_SENDS = [blob(50, 4 * MiB), blob(51, 3 * MiB)]


def write_all(fd, data):
    mv = memoryview(data)
    while mv:
        mv = mv[os.write(fd, mv):]


def read_all(fd, out):
    with open(out, "wb") as f:
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            f.write(b)


def main():
    mode = sys.argv[1]
    if mode == "expect":
        d = sys.argv[2]
        for name, parts in (("pipe", PIPE_SENDS), ("tcp", TCP_SENDS), ("reply", [REPLY]), ("nb", NB_SENDS)):
            with open(os.path.join(d, name + ".expect"), "wb") as f:
                f.write(b"".join(parts))
    elif mode == "receiver":
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", int(sys.argv[2])))
        ls.listen(1)
        c, _ = ls.accept()
        with open(sys.argv[3], "wb") as f:
            while True:
                b = c.recv(1 << 20)
                if not b:
                    break
                f.write(b)
        c.sendall(REPLY)
        c.close()
    elif mode == "writer":
        port = int(sys.argv[2])
        for p in PIPE_SENDS:
            if os.write(1, p) != len(p):  # a blocking pipe takes it whole
                sys.exit("short write on a blocking pipe")
        deadline = time.time() + 20
        while True:
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", port))
                break
            except OSError:
                s.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        for p in TCP_SENDS:
            s.sendall(p)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
        if got != REPLY:
            sys.exit("wrong reply")
    elif mode == "reader":
        read_all(0, sys.argv[2])
    elif mode == "nbwriter":
        os.set_blocking(1, False)
        calls = 0
        # 1. the program continues from where the kernel stopped (same memory)
        mv = memoryview(NB_SENDS[0])
        while mv:
            select.select([], [1], [])
            try:
                n = os.write(1, mv)
            except BlockingIOError:
                continue
            calls += 1
            mv = mv[n:]
        # 2. the program copies the rest each time (data[n:] is a new object)
        data = NB_SENDS[1]
        while data:
            select.select([], [1], [])
            try:
                n = os.write(1, data)
            except BlockingIOError:
                continue
            calls += 1
            data = data[n:]
        sys.stderr.write("write calls %d\n" % calls)
    elif mode == "slowreader":
        time.sleep(0.3)  # let the writer fill the pipe and see short writes
        with open(sys.argv[2], "wb") as f:
            while True:
                b = os.read(0, 16 * KiB)
                if not b:
                    break
                f.write(b)
                time.sleep(0.0005)
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()

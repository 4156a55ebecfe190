#!/usr/bin/env python3
"""proc_prog: an ordinary program that hands a connection to another one.

It knows nothing about psinterpose; the tests run it preloaded.

    proc_prog.py server PORT SPLIT RBUF PART1 HOW OUT [REPLY]
        listen on 127.0.0.1:PORT, accept one connection, read SPLIT bytes
        (RBUF bytes per recv) into PART1, then hand the connection over:
          exec-cat      dup2 it onto fd 0 and exec /bin/cat (stdout: OUT)
          exec-py3      dup2 it onto fd 3 and exec `proc_prog.py reader 3
                        OUT REPLY` (reads to EOF, then sends REPLY back)
          popen-cat     subprocess.Popen(["cat"], stdin=conn, stdout=OUT)
                        (fork/vfork + dup2 + exec in _posixsubprocess)
          spawn-cat     os.posix_spawn("/bin/cat") with file actions that
                        dup2 the connection onto 0 and OUT onto 1
          exec-fail     try to exec a program that does not exist, then
                        read the rest itself into OUT
    proc_prog.py reader FD OUT [REPLY]
    proc_prog.py forkwriter PORT PARENT1 CHILD PARENT2
        connect, write the files PARENT1 (a comma list), fork: the child
        writes CHILD and exits, the parent waits for it, then writes PARENT2
"""
import os
import socket
import subprocess
import sys


def read_to_eof(fd, out_path):
    with open(out_path, "wb") as out:
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            out.write(b)


def server(port, split, rbuf, part1, how, out, reply=None):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", int(port)))
    ls.listen(1)
    conn, _ = ls.accept()
    ls.close()
    left, rbuf = int(split), int(rbuf)
    with open(part1, "wb") as f:
        while left > 0:
            b = conn.recv(min(rbuf, left))
            if not b:
                raise SystemExit("proc_prog: EOF before the split point")
            f.write(b)
            left -= len(b)
    fd = conn.fileno()
    if how == "exec-cat":
        os.dup2(fd, 0)
        o = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(o, 1)
        os.execv("/bin/cat", ["cat"])
    elif how == "exec-py3":
        os.dup2(fd, 3)
        args = [sys.executable, os.path.abspath(__file__), "reader", "3", out]
        if reply:
            args.append(reply)
        os.execv(sys.executable, args)
    elif how == "popen-cat":
        with open(out, "wb") as o:
            p = subprocess.Popen(["cat"], stdin=fd, stdout=o)
        conn.close()
        if p.wait() != 0:
            raise SystemExit("proc_prog: cat failed")
    elif how == "spawn-cat":
        o = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        pid = os.posix_spawn("/bin/cat", ["cat"], os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, fd, 0),
                                           (os.POSIX_SPAWN_DUP2, o, 1)])
        os.close(o)
        conn.close()
        _, st = os.waitpid(pid, 0)
        if st != 0:
            raise SystemExit("proc_prog: spawned cat failed")
    elif how == "exec-fail":
        try:
            os.execv("/nonexistent/psi-no-such-program", ["x"])
        except OSError:
            pass
        read_to_eof(fd, out)
    else:
        raise SystemExit("proc_prog: unknown hand-over " + how)


def reader(fd, out, reply=None):
    fd = int(fd)
    read_to_eof(fd, out)
    if reply:
        with open(reply, "rb") as f:
            data = f.read()
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    os.close(fd)


def write_files(sock, names):
    for name in names.split(","):
        with open(name, "rb") as f:
            sock.sendall(f.read())


def forkwriter(port, first, child, last):
    s = socket.create_connection(("127.0.0.1", int(port)))
    write_files(s, first)
    pid = os.fork()
    if pid == 0:
        write_files(s, child)
        sys.stdout.flush()
        sys.exit(0)  # a normal exit: atexit handlers (and PSI_STATS) run
    _, st = os.waitpid(pid, 0)
    if st != 0:
        raise SystemExit("proc_prog: child failed")
    write_files(s, last)
    s.close()


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("server", "reader", "forkwriter"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    globals()[sys.argv[1]](*sys.argv[2:])

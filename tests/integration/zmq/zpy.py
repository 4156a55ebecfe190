"""pyzmq peer for t_zmq_python.sh: a real Python program using the system
pyzmq (libzmq loaded privately, as an extension module's dependency).

    zpy.py send EP OUT          PUSH, connects, sends the messages below
    zpy.py recv EP OUT N        PULL, binds (creates OUT.ready), receives N

Both write "size sha256" per frame to OUT. Messages alternate between
pyzmq's copying path and its zero-copy frames (copy=False)."""
import hashlib
import os
import sys

import zmq

role, ep, out = sys.argv[1:4]
ctx = zmq.Context()


def line(b):
    return "%d %s\n" % (len(b), hashlib.sha256(b).hexdigest())


if role == "send":
    s = ctx.socket(zmq.PUSH)
    s.connect(ep)
    msgs = [
        [os.urandom(1000)],
        [b"\xf5PSZ" + os.urandom(60)],
        [os.urandom(2 << 20)],
        [b"hdr", os.urandom(16 << 20), b"\xf5PSE"],
        [os.urandom(3 << 20), os.urandom(10)],
    ]
    with open(out, "w") as f:
        for i, m in enumerate(msgs):
            s.send_multipart(m, copy=(i % 2 == 0))
            f.writelines(line(fr) for fr in m)
    s.close(linger=-1)
else:
    s = ctx.socket(zmq.PULL)
    s.bind(ep)
    open(out + ".ready", "w").close()
    with open(out, "w") as f:
        for i in range(int(sys.argv[4])):
            m = s.recv_multipart(copy=(i % 2 == 0))
            for fr in m:
                if not isinstance(fr, bytes):
                    assert fr.get("Socket-Type") == "PUSH", "metadata lost"
                    fr = fr.bytes
                f.write(line(fr))
    s.close()
ctx.term()

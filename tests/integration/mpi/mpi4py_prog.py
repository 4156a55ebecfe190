"""mpi4py, Debian's python3-mpi4py on Open MPI, unmodified MPI use
(tests/integration/t_ompi_mpi4py.sh). For each size on the command line:

  fanout  rank 0 comm.Send()s one buffer to every other rank; they
          comm.Probe(ANY_SOURCE, ANY_TAG), size a buffer from the status and
          comm.Recv() it
  pickle  rank 0 comm.send()s a bytes object to rank 1 (pickled; mpi4py
          receives it with a matched probe, MPI_Mprobe + MPI_Mrecv)
  irecv   rank 1 posts comm.Irecv() before rank 0's comm.Isend()
  bcast   comm.Bcast() from rank 0

Senders print "SEND case size sha256", receivers "RECV case size sha256"
(one line per receiving rank). Exit status 1 if a received size is wrong.
"""
import hashlib
import sys

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, nranks = comm.Get_rank(), comm.Get_size()
out = open(f"out.{rank}", "w")
bad = 0


def payload(case, size):
    return bytearray(hashlib.shake_256(f"{case}:{size}".encode()).digest(size))


def report(what, case, data):
    print(what, case, len(data), hashlib.sha256(data).hexdigest(), file=out, flush=True)


for size in map(int, sys.argv[1:]):
    # fanout
    if rank == 0:
        buf = payload("fanout", size)
        for r in range(1, nranks):
            comm.Send([buf, MPI.BYTE], dest=r, tag=1)
        report("SEND", "fanout", buf)
    else:
        st = MPI.Status()
        comm.Probe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=st)
        n = st.Get_count(MPI.BYTE)
        if n != size:
            print(f"rank {rank}: probe said {n} bytes, sent {size}", file=sys.stderr)
            bad = 1
        buf = bytearray(n)
        comm.Recv([buf, MPI.BYTE], source=st.Get_source(), tag=st.Get_tag())
        report("RECV", "fanout", buf)
    # pickle
    if rank == 0:
        obj = bytes(payload("pickle", size))
        comm.send(obj, dest=1, tag=2)
        report("SEND", "pickle", obj)
    elif rank == 1:
        report("RECV", "pickle", comm.recv(source=0, tag=2))
    # irecv
    req = None
    if rank == 1:
        buf = bytearray(size)
        req = comm.Irecv([buf, MPI.BYTE], source=0, tag=3)
    comm.Barrier()
    if rank == 0:
        buf = payload("irecv", size)
        comm.Isend([buf, MPI.BYTE], dest=1, tag=3).Wait()
        report("SEND", "irecv", buf)
    elif rank == 1:
        st = MPI.Status()
        req.Wait(st)
        if st.Get_count(MPI.BYTE) != size:
            print(f"rank 1: irecv status says {st.Get_count(MPI.BYTE)} bytes", file=sys.stderr)
            bad = 1
        report("RECV", "irecv", buf)
    # bcast
    buf = payload("bcast", size) if rank == 0 else bytearray(size)
    comm.Bcast([buf, MPI.BYTE], root=0)
    report("SEND" if rank == 0 else "RECV", "bcast", buf)

print(f"DONE rank={rank} bad={bad}", file=out, flush=True)
sys.exit(bad)

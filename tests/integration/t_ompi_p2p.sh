#!/usr/bin/env bash
# t_mpi_p2p under Open MPI: the same program built with mpicc.openmpi and
# run with Open MPI's mpirun, the whole mpirun command preloaded; the
# library's Open MPI copy of the MPI logic does the work (docs/mpi.md).
PSI_TEST_MPI=openmpi exec bash "$(dirname "$0")/t_mpi_p2p.sh"

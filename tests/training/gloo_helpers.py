"""Start a worker in 2 forked CPU processes with a gloo rendezvous on a free loopback port.

A uniquely named module (not conftest): several test folders have a conftest.py."""

import socket

import torch.multiprocessing as mp


def spawn_gloo(worker, *args, nprocs: int = 2) -> None:
    """``worker(rank, nprocs, port, *args)`` in ``nprocs`` forked processes; raises if any of them fails."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(worker, args=(nprocs, port, *args), nprocs=nprocs, start_method="fork")

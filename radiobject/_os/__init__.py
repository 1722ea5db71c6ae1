"""What the operating system allows this process (rank 0: imports nothing of radiobject).

``memory``: the memory this process may still allocate (address-space limit, cgroups, RAM);
``files``: local files opened without blocking on a FIFO, device or socket; ``forks``: locks a
forked child gets new and unheld; ``interrupts``: stop requests (Ctrl-C, SIGTERM) that outlive a
swallowed ``KeyboardInterrupt``; ``owners``: which process owns a record, and whether it still runs.
"""

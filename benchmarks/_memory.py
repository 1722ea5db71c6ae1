"""Peak memory of a benchmark process and its children (DataLoader workers), sampled in a thread:
RSS (shared pages counted once per process) and PSS (shared pages divided among the processes
that map them). Used by ``benchmarks/loader.py``."""

from __future__ import annotations

import threading

__all__ = ["PeakMemory"]


class PeakMemory:
    """Polls RSS and PSS of this process + its children (DataLoader workers) in a thread."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.rss = self.pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self, full: bool) -> None:
        import psutil

        rss = pss = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                if full:
                    m = p.memory_full_info()
                    rss += m.rss
                    pss += m.pss
                else:
                    rss += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        self.rss = max(self.rss, rss)
        if full:
            self.pss = max(self.pss, pss)

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(0.05):
            self._sample(full=k % 4 == 0)
            k += 1

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        self._sample(full=True)
        return self.rss, self.pss

"""The real-node network lock: mutual exclusion with nothing left on disk."""

from __future__ import annotations

import threading
import time

from aerocdn_localcluster.realnode import net_lock


def test_one_holder_at_a_time_and_no_file() -> None:
    inside: list[int] = []
    overlaps: list[int] = []

    def worker(n: int) -> None:
        with net_lock():
            if inside:
                overlaps.append(n)
            inside.append(n)
            time.sleep(0.05)
            inside.remove(n)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert overlaps == [] and inside == []
    with open("/proc/net/unix") as f:  # released: nobody holds the name any more
        assert "@aerocdn-localcluster-net" not in f.read()

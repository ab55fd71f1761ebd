"""Peak resident memory of a process tree, sampled from ``/proc`` (Linux only).

A server started with workers is a tree: a supervisor and its worker processes, started
after it and sometimes restarted. So a background thread walks the tree every
``interval_s`` seconds and sums ``VmRSS`` over it; at the end each live process's
``VmHWM`` (its own kernel-kept peak) is read too, which catches a spike between samples.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
MIB = 1024 * 1024


@dataclass
class MemoryResult:
    """Peaks in bytes; filled in while :func:`track` runs and final when it exits."""

    pid: int
    peak_total: int = 0  # largest sum of VmRSS over the tree in one sample
    peak_single: int = 0  # largest VmRSS of one process in any sample
    hwm_total: int = 0  # sum of VmHWM over the tree's processes alive at the end
    hwm_single: int = 0  # largest VmHWM of one process alive at the end
    samples: int = 0
    max_processes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, rss: dict[int, int]) -> None:
        """Fold one sample (pid -> VmRSS bytes) into the peaks."""
        with self._lock:
            self.samples += 1
            self.peak_total = max(self.peak_total, sum(rss.values()))
            self.peak_single = max(self.peak_single, max(rss.values(), default=0))
            self.max_processes = max(self.max_processes, len(rss))

    def as_dict(self) -> dict[str, float | int]:
        """The figures in MiB (one decimal), for a results file."""
        return {
            "peak_total_mib": round(self.peak_total / MIB, 1),
            "peak_single_mib": round(self.peak_single / MIB, 1),
            "hwm_total_mib": round(self.hwm_total / MIB, 1),
            "hwm_single_mib": round(self.hwm_single / MIB, 1),
            "samples": self.samples,
            "max_processes": self.max_processes,
        }


def _parent_of(pid: int) -> int | None:
    """The ppid from ``/proc/<pid>/stat`` (after the ``)`` closing the command name)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def tree_pids(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir(PROC):
        if entry.isdigit():
            parent = _parent_of(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def status_bytes(pid: int, key: str) -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``) in bytes."""
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None  # a zombie or kernel thread has no memory fields


def sample(root: int, key: str = "VmRSS") -> dict[int, int]:
    """``key`` in bytes for each live process of the tree."""
    values = {pid: status_bytes(pid, key) for pid in tree_pids(root)}
    return {pid: value for pid, value in values.items() if value is not None}


@contextmanager
def track(pid: int, interval_s: float = 0.1) -> Iterator[MemoryResult]:
    """Sample the tree under ``pid`` until the block exits; the result is final then."""
    result = MemoryResult(pid)
    stop = threading.Event()

    def loop() -> None:
        while True:
            result.record(sample(pid))
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=loop, name=f"procmem-{pid}", daemon=True)
    thread.start()
    try:
        yield result
    finally:
        hwm = sample(pid, "VmHWM")
        stop.set()
        thread.join()
        result.hwm_total = sum(hwm.values())
        result.hwm_single = max(hwm.values(), default=0)

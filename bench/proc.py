"""A process tree's memory, read from Linux's ``/proc`` (the benchmarks)."""

import os


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (processes that exit meanwhile are skipped)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def status_kb(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` field in kB (``VmRSS``, ``VmHWM``); 0 once ``pid`` exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def own_peak_mb() -> float:
    """This process's peak resident memory (VmHWM) in MB. Not ``ru_maxrss``: Linux carries
    that over from the parent across fork and exec, and a benchmark's parent holds
    TensorFlow."""
    return status_kb(os.getpid(), "VmHWM") / 1024


def reset_peak(pid: int) -> None:
    """Sets ``pid``'s VmHWM to its current VmRSS (Linux >= 4.0); no-op once it exited."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass


def tree_rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and its descendants, summed, in MB."""
    return sum(status_kb(p, "VmRSS") for p in tree(pid)) / 1024

"""The process's limits, shared by the server and the load tester: descriptors, memory (stdlib)."""

from __future__ import annotations

import resource


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (at most the hard limit); return (soft, hard).

    Every socket is a descriptor: a default soft limit of 1024 would cap a server or a load
    generator far below what the machine can hold. The caller decides what a lower result means.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft, hard


def available_memory(meminfo: str = "/proc/meminfo") -> int | None:
    """Return the memory the kernel says is available, in bytes, or None when unknown."""
    try:
        with open(meminfo) as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None

"""What this machine can hold: the devices it has and the memory a user-given size needs, checked
before anything is allocated, so a typo such as ``buffer_size=10**13`` or ``device="cuda:7"`` is
refused with the numbers and the fix instead of an allocator's traceback or a swap storm.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["OutOfMemoryError", "available_devices", "check_config_device", "check_device",
           "check_memory", "format_bytes", "machine_memory"]


class OutOfMemoryError(MemoryError, ValueError):
    """A size that cannot fit this machine, refused before allocating: a ``MemoryError`` by nature
    and a ``ValueError`` because it is bad input (so the command line reports it in one line)."""


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human figure (``"3.2 GB"``, ``"37 TB"``)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    raise AssertionError("unreachable")


def machine_memory() -> tuple[int, int]:
    """``(total, available)`` bytes of RAM: ``/proc/meminfo`` where there is one (available counts
    reclaimable caches, as the kernel reports it), else ``os.sysconf`` (available = total)."""
    try:
        fields = {}
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, rest = line.partition(":")
                fields[name] = int(rest.split()[0]) * 1024  # the kernel writes kB
        total = fields["MemTotal"]
        return total, fields.get("MemAvailable", fields.get("MemFree", total))
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0, 0  # unknown: check_memory then checks nothing
    return total, total


def _device_memory(device: Any) -> tuple[int, int] | None:
    """``(total, available)`` bytes of an accelerator, or None for host memory or an unknown one."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device)
        return int(total), int(free)
    return None


def check_memory(nbytes: float, what: str, fix: str, *, device: Any = None, eager: bool = True) -> None:
    """Refuse with an :class:`OutOfMemoryError` naming the estimate, the machine's memory and
    ``fix`` when ``nbytes`` (the estimate for ``what``) cannot fit.

    ``eager``: the allocation is written at once (numpy tables), so it must fit in the memory
    available now; otherwise its pages are touched as it fills (a replay buffer), so it must fit in
    the machine's total memory, as other processes may end before it is full. ``device``: where it
    lives (a CUDA device is checked against its own memory; anything else against RAM).
    """
    measured = _device_memory(device) if device is not None and str(device) != "cpu" else None
    total, available = measured if measured is not None else machine_memory()
    where = f"{device}" if measured is not None else "RAM"
    budget = available if eager else total
    if budget and nbytes > budget:
        raise OutOfMemoryError(
            f"{what} needs about {format_bytes(nbytes)}, more than this machine's {where} "
            f"({format_bytes(total)} in all, {format_bytes(available)} available); {fix}")


def available_devices() -> list[str]:
    """The torch devices this build and machine can use, ``"cpu"`` first."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        found += [f"xpu:{i}" for i in range(xpu.device_count())]
    return found


def check_device(name: str, owner: str) -> None:
    """Refuse (``ValueError``) a device this machine does not have, naming it, the devices it has
    and the fix; ``owner`` names the setting (``"SACConfig.device"``). A string torch cannot parse
    is left to the config's own check; device types torch has no availability query for (``meta``,
    out-of-tree backends) pass."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        return
    if device.type == "cpu":
        return
    backend = {"cuda": torch.cuda, "xpu": getattr(torch, "xpu", None),
               "mps": getattr(torch.backends, "mps", None)}.get(device.type)
    if backend is None or not hasattr(backend, "is_available"):
        return
    if device.type == "mps":
        present = backend.is_available()
    else:
        present = backend.is_available() and (device.index is None
                                              or device.index < backend.device_count())
    if not present:
        raise ValueError(f"{owner} is {name!r}, which this machine does not have (available: "
                         f"{', '.join(available_devices())}); set it to one of those, e.g. "
                         f"{owner.rsplit('.', 1)[-1]}='cpu'")


def check_config_device(config: Any) -> Any:
    """``config`` unchanged after :func:`check_device` on its ``device`` field (``"auto"`` and a
    config without one pass): called where an agent is built, not where a config is, so a config
    naming a GPU can still be written, read back and sent to a machine that has one."""
    name = getattr(config, "device", None)
    if isinstance(name, str) and name != "auto":
        check_device(name, f"{type(config).__name__}.device")
    return config

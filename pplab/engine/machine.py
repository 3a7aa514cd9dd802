"""What this machine can run: its cores and GPUs, and what more ranks than that do to a run.

What it teaches: a measured timeline shows the schedule only while every rank has a core (or
a GPU) of its own. With more ranks than cores the ranks take turns, and the waiting that adds
looks just like pipeline bubbles. ``pplab train`` says so in a warning and refuses clearly
absurd counts unless asked (``--oversubscribe``); even then it refuses more ranks than the
machine's memory holds, since every rank is a Python process with torch loaded. The app's Run
page, serving other people, keeps to one rank per core. The numbers live in ``pplab.limits``.
Nothing here imports torch: GPUs are counted by ``nvidia-smi``.

    python -c "from pplab.engine.machine import rank_slots; print(rank_slots('cpu'))"
"""

from __future__ import annotations

import os
import shutil
import subprocess

from pplab import limits
from pplab.topology import Topology


def cpu_count() -> int:
    """Cores this process may use (its affinity mask, not just the machine's total)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def gpu_count() -> int:
    """GPUs visible here, asked of nvidia-smi so that counting them needs no torch."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    found = sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        found = min(found, len([d for d in visible.split(",") if d.strip()]))
    return found


def memory_bytes() -> int | None:
    """This machine's physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def rank_slots(device: str) -> int:
    """How many ranks can run side by side without sharing: GPUs on cuda, else cores."""
    return gpu_count() if device == "cuda" else cpu_count()


def _slot_word(device: str, slots: int) -> str:
    if device == "cuda":
        return f"{slots} GPU" + ("" if slots == 1 else "s")
    return f"{slots} CPU core" + ("" if slots == 1 else "s")


def check_fits(topology: Topology, device: str, slots: int) -> None:
    """Refuse more ranks than ``slots``: the app's bound, for a machine other people share."""
    if topology.world_size > slots:
        raise ValueError(f"{topology.describe()}, but this machine has "
                         f"{_slot_word(device, slots)}")


def check_not_absurd(topology: Topology, device: str, slots: int,
                     oversubscribe: bool = False, memory: int | None = None) -> None:
    """Refuse a count no local run means, in one line, before anything starts.

    Over ``limits.MAX_PROCESSES`` processes, or over ``limits.MAX_RANKS_PER_SLOT`` per core
    (or GPU), is refused unless ``oversubscribe``; more ranks than ``memory`` (default: this
    machine's) holds at ``limits.RANK_MEMORY_BYTES`` each is refused always.
    """
    world = topology.world_size
    memory = memory_bytes() if memory is None else memory
    if memory is not None and world * limits.RANK_MEMORY_BYTES > memory:
        raise ValueError(f"{topology.describe()} need about "
                         f"{world * limits.RANK_MEMORY_BYTES / 2**30:.0f} GiB of memory "
                         f"({limits.RANK_MEMORY_BYTES // 2**20} MiB per rank, pplab.limits); "
                         f"this machine has {memory / 2**30:.0f} GiB")
    if oversubscribe or (world <= limits.MAX_PROCESSES
                         and world <= limits.MAX_RANKS_PER_SLOT * max(1, slots)):
        return
    raise ValueError(f"{topology.describe()} on {_slot_word(device, slots)} is more than "
                     f"this machine can run side by side (at most {limits.MAX_PROCESSES} "
                     f"processes, {limits.MAX_RANKS_PER_SLOT} per "
                     f"{'GPU' if device == 'cuda' else 'core'}; pplab.limits); pass "
                     f"--oversubscribe to start them anyway")


def sharing_warning(topology: Topology, device: str, slots: int) -> str | None:
    """One line when ranks must share cores or GPUs: measured times then show the sharing."""
    if topology.world_size <= slots:
        return None
    return (f"{topology.world_size} ranks on {_slot_word(device, slots)}: ranks take turns, "
            f"so measured times show {'GPU' if device == 'cuda' else 'CPU'} sharing, not the "
            f"schedule")


def launched_by_torchrun() -> bool:
    """True under torchrun: this process is one rank, started by someone else."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ

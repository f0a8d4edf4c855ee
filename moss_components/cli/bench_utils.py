"""What every ``moss-speech bench`` shares: a plain-text table, device sync, peak memory of a block, thread count."""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch


def table(header: list[str], rows: list[list]) -> str:
    """Right-aligned columns with a dashed rule under the header."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells) -> str:
        return "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+) kB", f.read()).group(1)) * 1024


class PeakMemory:
    """Peak bytes above the start while the block runs: the CUDA allocator's peak on a GPU; on CPU the rise of the
    process' peak resident memory (``VmHWM``, reset through ``/proc/self/clear_refs``), 0 where Linux does not allow
    that. ``.bytes`` holds the figure after the block."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.bytes, self.start = device, 0, None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM to the current resident size
                self.start = _status_bytes("VmRSS")
            except OSError:
                self.start = None
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self.start
        elif self.start is not None:
            self.bytes = _status_bytes("VmHWM") - self.start


@contextmanager
def torch_threads(n: int):
    """``torch.set_num_threads(n)`` inside the block, the caller's count restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

"""How many CPU threads torch may use per process (``ECGLENS_TORCH_THREADS``, default 1).

The explainer sends many small batches (a few to a few dozen rows of 10 s each). For those, torch's intra-op
threads cost more in OpenMP hand-offs than they save, and when another process holds the other cores they spin:
`ecglens explain` on MIT-BIH 119 at budget 500 took 33 s with torch's default of 2 threads beside two busy
processes on the 2-core machine, and 1.6 s with one thread. Scale out with processes (Celery workers, one per
core) rather than threads.
"""

from __future__ import annotations

import os
import sys

ENV = "ECGLENS_TORCH_THREADS"


def torch_threads(value: str | int | None = None) -> int:
    """The thread count: ``value``, else ``$ECGLENS_TORCH_THREADS``, else ``$OMP_NUM_THREADS``, else 1.

    Raises ValueError naming the variable when the value is not a whole number of at least 1.
    """
    raw = value if value is not None else os.environ.get(ENV) or os.environ.get("OMP_NUM_THREADS") or 1
    try:
        n = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"{ENV} must be a whole number of threads, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"{ENV} must be at least 1, got {n}")
    return n


def configure_torch_threads(value: str | int | None = None) -> int:
    """Apply `torch_threads` to this process and return it.

    Before torch is imported this only sets ``OMP_NUM_THREADS`` (torch reads it when it starts, and importing
    torch here would slow every command down); after, it calls ``torch.set_num_threads``.
    """
    n = torch_threads(value)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)
    return n

"""One thread pool per core while a judge call runs: the encoder's, not four competing ones.

Contract:
- Self-contained (torch and threadpoolctl only, no project import): it is copied into every Triton version beside
  ``student.py``, which uses it.
- ``Scoped(torch_single)`` is a context manager for one judge call (``student.Judge.judge``). Inside it numpy's BLAS
  (OpenBLAS: the pooling, the novelty score) runs on one thread and, when ``torch_single`` (the encoder runs on ONNX
  Runtime's own threads, on the CPU), so does torch (then only the small heads); on leaving, even by an exception,
  both get back the thread counts they had. With the torch encoder, torch keeps its threads: it runs the encoder.
- Why: each of these libraries keeps a pool of one thread per core whose threads busy-wait for a while after their
  work, so on a 2-core machine the heads' torch threads and the pooling's OpenBLAS threads took cores from the
  ONNX Runtime run that followed, and theirs from them (issue 13: the heads of 64 items took 15-26 ms after an
  encoder run against 4-6 ms on one thread). Their work is small; one thread does it faster than a contested two.
- Scoped, not set once for the process: a caller that also runs torch or numpy work of its own (the benchmarks run
  a torch judge beside the ONNX one) keeps its settings. ``torch.set_num_threads`` is process-wide, so while a call
  runs another Python thread's torch work also gets one thread; a judge is called from one thread at a time in the
  Triton model and the benchmarks. Entering and leaving costs 10-20 us (threadpoolctl's controller is made on
  first use and after any new import, which may have loaded another BLAS: it walks the loaded libraries).
"""

from __future__ import annotations

import sys

import torch


_controller: tuple[int, object] = (-1, None)


def _blas():
    """threadpoolctl's controller of the BLAS libraries loaded now (numpy's OpenBLAS, and scipy's once imported):
    made on first use and again after any new import, which may have loaded another."""
    global _controller
    modules, controller = _controller
    if modules != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController().select(user_api="blas")
        _controller = (len(sys.modules), controller)
    return controller


class Scoped:
    def __init__(self, torch_single: bool):
        self.torch_single = torch_single
        self._torch_threads: list[int] = []
        self._limits: list = []

    def __enter__(self) -> "Scoped":
        self._limits.append(_blas().limit(limits=1))
        self._torch_threads.append(torch.get_num_threads())
        if self.torch_single:
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc) -> None:
        threads = self._torch_threads.pop()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self._limits.pop().restore_original_limits()

"""One worker pool for every job that fans out over models (zoo training, scoring, removal).

:func:`fan_out` runs a module-level function over tasks, in this process when one worker is
asked for, else in ``spawn`` worker processes of one thread each (torch, OpenMP, MKL and the
tokenizers' thread pool: on a small CPU, threads of several processes oversubscribe it and
everything slows several-fold). :func:`process_memo` keeps per-process state that workers
build once (a testbed, a study) and reuse for every task they get. :func:`pinned_training`
runs a training block on :data:`TRAIN_THREADS` threads with torch's deterministic algorithms,
in a worker or in the main process alike.

Example:
    >>> sorted(fan_out(pow, [(2, 3), (3, 2)], workers=1))
    [(0, 8), (1, 9)]
    >>> process_memo("doc", "k", lambda: [1]) is process_memo("doc", "k", lambda: [2])
    True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: Environment of worker processes: one thread each, tokenizers included.
ONE_THREAD_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def fan_out(
    fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]], *, workers: int
) -> Iterator[tuple[int, T]]:
    """Call ``fn(*task)`` for every task; yields ``(task index, result)`` as each finishes.

    Args:
        fn: A module-level (picklable) function.
        tasks: Its argument tuples.
        workers: Processes; with 1 (or a single task) the tasks run here, in order, with this
            process's threads.

    Yields:
        ``(index into tasks, fn's result)``, in order of completion.
    """
    if workers <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            yield i, fn(*task)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    for var, value in ONE_THREAD_ENV.items():
        os.environ.setdefault(var, value)
    with ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_one_thread
    ) as pool:
        futures = {pool.submit(fn, *task): i for i, task in enumerate(tasks)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


#: Torch threads of every training run (zoo base and personas, smol adapters, removal),
#: whatever the machine's cores: float sums depend on how the work is split between threads,
#: so a fixed count (the workers' one) keeps training the same on machines of different sizes.
TRAIN_THREADS = 1


@contextlib.contextmanager
def pinned_training(threads: int = TRAIN_THREADS) -> Iterator[None]:
    """Run a block with a fixed torch thread count and torch's deterministic algorithms.

    Restores the previous settings afterwards. Deterministic algorithms only warn where an
    operation has no deterministic version (``warn_only``), and cuBLAS gets the fixed
    workspace its determinism needs (GPU runs). What this does not pin: the CPU's instruction
    set and the torch/BLAS build, so bitwise results still differ between machines (see the
    README, "What is reproducible").

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with pinned_training(1):
        ...     torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
        (1, True)
        >>> torch.get_num_threads() == before
        True
    """
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_bench = torch.backends.cudnn.benchmark
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.backends.cudnn.benchmark = old_bench


#: Per process: namespace -> (key, value) of the last :func:`process_memo` build.
_MEMO: dict[str, tuple[str, Any]] = {}


def process_memo(namespace: str, key: str, build: Callable[[], T]) -> T:
    """The value ``build()`` made for ``key`` in this process (one slot per namespace).

    A worker process reuses what it built for the previous task of the same job; a new key
    (another run's settings) replaces it.
    """
    held = _MEMO.get(namespace)
    if held is None or held[0] != key:
        held = (key, build())
        _MEMO[namespace] = held
    return held[1]

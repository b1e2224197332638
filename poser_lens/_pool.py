"""One worker pool for every job that fans out over models (zoo training, scoring, removal).

:func:`fan_out` runs a module-level function over tasks, in this process when one worker is
asked for, else in ``spawn`` worker processes of one thread each (torch, OpenMP, MKL and the
tokenizers' thread pool: on a small CPU, threads of several processes oversubscribe it and
everything slows several-fold). :func:`process_memo` keeps per-process state that workers
build once (a testbed, a study) and reuse for every task they get.

Example:
    >>> sorted(fan_out(pow, [(2, 3), (3, 2)], workers=1))
    [(0, 8), (1, 9)]
    >>> process_memo("doc", "k", lambda: [1]) is process_memo("doc", "k", lambda: [2])
    True
"""

from __future__ import annotations

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

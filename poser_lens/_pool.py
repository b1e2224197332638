"""One worker pool for every job that fans out over models (zoo training, scoring, removal).

:func:`fan_out` runs a module-level function over tasks, in this process when one worker is
asked for, else in ``spawn`` worker processes of one thread each (torch, OpenMP, MKL and the
tokenizers' thread pool: on a small CPU, threads of several processes oversubscribe it and
everything slows several-fold). Given a Ray address (``ray=``), it runs them as Ray tasks
instead (:func:`connect_ray`; Ray is the optional extra ``poser_lens[ray]`` and is imported
only then): one GPU per task when the job's models run on ``cuda`` (``device=``), else one CPU
and one thread per task, as many at once as the cluster has room for. :func:`process_memo`
keeps per-process state that workers build once (a testbed, a study) and reuse for every task
they get. :func:`pinned_training` runs a training block on :data:`TRAIN_THREADS` threads with
torch's deterministic algorithms, in a worker or in the main process alike.

Tasks write their results themselves (into a run or zoo folder), so every backend resumes
alike. Workers run in this process's working folder (Ray workers too, where it exists), so
relative paths mean the same to them; on a Ray cluster, the folders must be on a filesystem
that every node shares, at the same path.

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

#: Ray's ``address`` that starts a new Ray instance on this machine (``--ray`` alone).
RAY_LOCAL = "local"


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def fan_out(
    fn: Callable[..., T],
    tasks: Sequence[tuple[Any, ...]],
    *,
    workers: int,
    ray: str | None = None,
    device: str = "cpu",
) -> Iterator[tuple[int, T]]:
    """Call ``fn(*task)`` for every task; yields ``(task index, result)`` as each finishes.

    Args:
        fn: A module-level (picklable) function.
        tasks: Its argument tuples.
        workers: Processes; with 1 (or a single task) the tasks run here, in order, with this
            process's threads. Ignored with ``ray`` (the cluster's resources decide).
        ray: Run the tasks as Ray tasks on this cluster (:func:`connect_ray`); None: local
            processes.
        device: Where ``fn`` runs models; with ``ray``, a ``cuda`` device gives each task one
            GPU.

    Yields:
        ``(index into tasks, fn's result)``, in order of completion.

    Raises:
        ValueError: With ``ray``, if Ray is not installed, or the device is ``cuda`` and the
            cluster has no GPU.
    """
    if ray is not None:
        yield from _ray_fan_out(fn, tasks, ray, gpu=device.startswith("cuda"))
        return
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


def connect_ray(address: str) -> Any:
    """The ``ray`` module, connected to a cluster (once per process).

    A connection this process already has (``ray.init`` called before) is used as it is,
    whatever ``address`` says.

    Args:
        address: ``local`` (start a Ray instance on this machine, stopped when this process
            ends), ``auto`` (the running cluster this machine is part of) or a cluster's
            address (``HOST:6379``, or ``ray://HOST:10001`` for Ray Client), as ``ray.init``
            takes it.

    Raises:
        ValueError: If Ray is not installed (``pip install 'poser_lens[ray]'``).
    """
    try:
        import ray
    except ImportError:
        raise ValueError(
            f"--ray {address}: Ray is not installed (pip install 'poser_lens[ray]')"
        ) from None
    if not ray.is_initialized():
        ray.init(address=address)
    return ray


def _ray_task(fn: Callable[..., T], task: tuple[Any, ...], cwd: str) -> T:
    """One task in a Ray worker: in the driver's working folder, on one thread."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    _one_thread()
    return fn(*task)


def _ray_fan_out(
    fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]], address: str, *, gpu: bool
) -> Iterator[tuple[int, T]]:
    """:func:`fan_out` on Ray: one task per argument tuple (a GPU each when ``gpu``)."""
    if not tasks:
        return
    ray = connect_ray(address)
    if gpu and not ray.cluster_resources().get("GPU", 0) > 0:
        raise ValueError(f"--ray {address}: the models run on cuda but the Ray cluster has no GPU")
    remote = ray.remote(
        num_cpus=1,
        num_gpus=1 if gpu else 0,
        # A new worker process per GPU task (CUDA keeps a process on the GPU it first used);
        # CPU workers take task after task, reusing their process_memo state.
        max_calls=1 if gpu else 0,
        runtime_env={"env_vars": dict(ONE_THREAD_ENV)},
    )(_ray_task)
    cwd = os.getcwd()
    index = {remote.remote(fn, task, cwd): i for i, task in enumerate(tasks)}
    pending = list(index)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield index[done[0]], ray.get(done[0])
    finally:  # a failed task (or a consumer that stops early) cancels the rest
        for ref in pending:
            ray.cancel(ref)


#: Torch threads of every training run (zoo base and personas, smol adapters, removal),
#: whatever the machine's cores: float sums depend on how the work is split between threads,
#: so a fixed count (the workers' one) keeps training the same on machines of different sizes.
TRAIN_THREADS = 1

#: Torch threads of the tiny zoo's base model, which trains alone in one process before the
#: persona models fan out: two (the 2-core machine's cores, 1.6x faster per step than one),
#: fixed on every machine for the same reason as :data:`TRAIN_THREADS`.
BASE_THREADS = 2


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

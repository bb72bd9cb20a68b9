"""Environments in worker processes, stepped in lock-step (docs/ARCHITECTURE.md, "Environment").

``EnvPool(suite, num_envs, num_workers)`` builds ``num_envs`` environments with
``suite.make_env()``; environment ``i`` lives in worker ``i % num_workers``. ``reset_many`` and
``step_many`` send every worker its share of the requests first and only then gather the replies,
so the workers (and the engine work inside them) run concurrently; results come back in request
order. Only the suite protocol is used, so any benchmark works.

Failures end one episode, never the batch:

- an exception inside one environment's ``reset``/``step`` → that result carries
  ``info["error"]`` (a step's is ``terminated``), and the worker rebuilds that environment;
- a worker that dies (killed, crashed) or stops answering for ``timeout_s`` → every pending
  result of its environments carries ``info["error"]``; a fresh worker replaces it, and its
  environments must be reset before they step again.

Workers are started with ``spawn`` (the parent may hold torch and threads; it is never forked),
are daemonic, ignore SIGINT (the parent handles Ctrl-C and shuts them down) and exit when their
pipe closes; a watchdog thread also ends a worker within :data:`PARENT_POLL_S` of its parent's
death even while it is busy (starting its environments, in a long reset), silently. So a parent
that dies, even by SIGKILL, leaves no orphans and no tracebacks. ``close()`` (or leaving the ``with`` block,
or garbage collection) stops them; it is idempotent.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from skillmaster.envs.base import INFO_KEYS, EnvSuite
from skillmaster.errors import SkillMasterError

log = logging.getLogger(__name__)

_TIMEOUT = object()
PARENT_POLL_S = 0.2
"""How often a worker checks that the process that started it is still alive."""
_INFO_DEFAULTS: dict[str, Any] = {k: "" for k in INFO_KEYS} | {"admissible_actions": [], "won": False}


# --------------------------------------------------------------------------- worker side
def _exit_with_parent(parent_pid: int) -> None:
    """Start a daemon thread that ends this worker at once (``os._exit``: no cleanup, no traceback)
    when its parent is gone, i.e. when this process has been re-parented."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="skillmaster-parent-watch", daemon=True).start()


def _worker_main(
    conn: Connection, suite: EnvSuite, env_ids: list[int], parent_pid: int | None = None
) -> None:
    """Serve ``(kind, [(env_id, arg), ...])`` requests until ``close`` or until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    try:
        envs = {i: suite.make_env() for i in env_ids}
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(("fatal", exc if _picklable(exc) else RuntimeError(repr(exc))))
        return
    try:
        conn.send(("ready", None))
    except (BrokenPipeError, OSError):  # the parent is gone
        return
    while True:
        try:
            kind, items = conn.recv()
        except (EOFError, OSError):
            break
        if kind == "close":
            break
        replies = []
        for i, arg in items:
            started = time.perf_counter()
            try:
                if kind == "reset":
                    result = envs[i].reset(seed=arg.get("seed"), options=arg)
                else:
                    result = envs[i].step(arg)
                replies.append(("ok", result, time.perf_counter() - started))
            except Exception as exc:
                replies.append(("error", f"{type(exc).__name__}: {exc}", time.perf_counter() - started))
                with contextlib.suppress(Exception):
                    envs[i].close()
                with contextlib.suppress(Exception):
                    envs[i] = suite.make_env()
        try:
            conn.send(replies)
        except (BrokenPipeError, OSError):
            break
    for env in envs.values():
        with contextlib.suppress(Exception):
            env.close()


def _picklable(obj: Any) -> bool:
    import pickle

    try:
        pickle.dumps(obj)
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- parent side
@dataclass
class _Worker:
    index: int
    env_ids: list[int]
    process: Any  # multiprocessing.Process of the spawn context
    conn: Connection


def _stop(worker: _Worker, grace_s: float = 3.0) -> None:
    with contextlib.suppress(Exception):
        worker.conn.send(("close", None))
    with contextlib.suppress(Exception):
        worker.conn.close()
    worker.process.join(grace_s)
    if worker.process.is_alive():
        worker.process.terminate()
        worker.process.join(2.0)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join(2.0)


def _exit_reason(worker: _Worker) -> str:
    worker.process.join(1.0)
    code = worker.process.exitcode
    return f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"


def _shutdown(workers: list[_Worker | None]) -> None:
    for w in workers:
        if w is not None:
            _stop(w)
    workers.clear()


class EnvPool:
    """``num_envs`` environments of ``suite`` spread over ``num_workers`` processes (module doc)."""

    def __init__(
        self,
        suite: EnvSuite,
        num_envs: int,
        num_workers: int = 1,
        *,
        timeout_s: float | None = 600.0,
        start_method: str = "spawn",
    ):
        if num_envs < 1 or num_workers < 1:
            raise ValueError(
                f"EnvPool needs num_envs >= 1 and num_workers >= 1 (got {num_envs}, {num_workers})"
            )
        self.suite = suite
        self.num_envs = num_envs
        self.num_workers = min(num_workers, num_envs)
        self.timeout_s = timeout_s
        self.last_timings: list[float] = []
        """Seconds each request of the last call took inside its worker (0 for failed ones)."""
        self._ctx = mp.get_context(start_method)
        self._workers: list[_Worker | None] = [None] * self.num_workers
        self._needs_reset: set[int] = set(range(num_envs))
        self._last_info: dict[int, dict] = {}
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)
        try:
            for w in range(self.num_workers):
                self._workers[w] = self._spawn(w)
            for w in range(self.num_workers):
                self._await_ready(self._worker(w))
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ public API
    def reset_many(self, requests: list[tuple[int, dict]]) -> list[tuple[str, dict]]:
        """Reset env ``i`` with ``options`` for each ``(i, options)``; ``[(obs, info), ...]`` in order."""
        return self._run("reset", requests)

    def step_many(self, requests: list[tuple[int, str]]) -> list[tuple[str, float, bool, bool, dict]]:
        """Step env ``i`` with ``action`` for each ``(i, action)``; 5-tuples in request order."""
        return self._run("step", requests)

    def worker_pids(self) -> list[int]:
        return [self._worker(w).process.pid for w in range(self.num_workers)]

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _worker(self, w: int) -> _Worker:
        worker = self._workers[w] if self._workers else None
        if worker is None:
            raise RuntimeError("the environment pool is closed")
        return worker

    def _spawn(self, w: int) -> _Worker:
        env_ids = list(range(w, self.num_envs, self.num_workers))
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, self.suite, env_ids, os.getpid()),
            name=f"skillmaster-env-{w}",
            daemon=True,
        )
        proc.start()
        child.close()  # the worker holds the only copy: its death closes the pipe
        return _Worker(w, env_ids, proc, parent)

    def _receive(self, worker: _Worker, timeout: float | None) -> Any:
        """The worker's next message, ``None`` if it died, or ``_TIMEOUT``."""
        ready = wait([worker.conn, worker.process.sentinel], timeout)
        if worker.conn in ready:
            try:
                return worker.conn.recv()
            except (EOFError, OSError):
                return None
        return None if ready else _TIMEOUT

    def _await_ready(self, worker: _Worker) -> None:
        msg = self._receive(worker, self.timeout_s)
        if isinstance(msg, tuple) and msg[0] == "ready":
            return
        if isinstance(msg, tuple) and msg[0] == "fatal":
            if isinstance(msg[1], SkillMasterError):
                raise msg[1]
            raise RuntimeError(f"environment worker {worker.index} failed to start: {msg[1]!r}")
        raise RuntimeError(
            f"environment worker {worker.index} exited during start-up ({_exit_reason(worker)})"
        )

    def _restart(self, w: int, reason: str) -> None:
        log.warning("environment worker %d: %s; starting a fresh one", w, reason)
        _stop(self._worker(w), grace_s=0.5)
        self._workers[w] = self._spawn(w)
        self._needs_reset.update(self._worker(w).env_ids)
        self._await_ready(self._worker(w))

    def _error_result(self, kind: str, i: int, arg: Any, reason: str) -> tuple:
        base = {"task_id": arg.get("task_id", "")} if kind == "reset" else self._last_info.get(i, {})
        info = {**_INFO_DEFAULTS, **base, "admissible_actions": [], "won": False, "error": reason}
        return ("", info) if kind == "reset" else ("", 0.0, True, False, info)

    def _run(self, kind: str, requests: list[tuple[int, Any]]) -> list[tuple]:
        if self.closed:
            raise RuntimeError("the environment pool is closed")
        ids = [i for i, _ in requests]
        if len(set(ids)) != len(ids) or any(not 0 <= i < self.num_envs for i in ids):
            raise ValueError(
                f"{kind}_many: environment ids must be distinct and in [0, {self.num_envs}) (got {ids})"
            )
        results: list[Any] = [None] * len(requests)
        timings = [0.0] * len(requests)
        by_worker: dict[int, list[tuple[int, int, Any]]] = {}
        for pos, (i, arg) in enumerate(requests):
            if kind == "step" and i in self._needs_reset:
                results[pos] = self._error_result(
                    kind, i, arg, f"environment {i} must be reset before it steps"
                )
            else:
                by_worker.setdefault(i % self.num_workers, []).append((pos, i, arg))
        try:
            sent = []
            for w, items in by_worker.items():
                try:
                    self._worker(w).conn.send((kind, [(i, arg) for _, i, arg in items]))
                    sent.append(w)
                except (BrokenPipeError, OSError):
                    self._fail(kind, w, items, "its worker process died", results)
            for w in sent:
                items = by_worker[w]
                reply = self._receive(self._worker(w), self.timeout_s)
                if reply is None or reply is _TIMEOUT:
                    why = (
                        f"no answer within {self.timeout_s} s"
                        if reply is _TIMEOUT
                        else _exit_reason(self._worker(w))
                    )
                    self._fail(kind, w, items, f"its worker process died ({why})", results)
                    continue
                for (pos, i, arg), (status, value, elapsed) in zip(items, reply, strict=True):
                    timings[pos] = elapsed
                    if status == "ok":
                        results[pos] = value
                        self._last_info[i] = value[-1]
                        if kind == "reset":
                            self._needs_reset.discard(i)
                    else:
                        log.warning("environment %d: %s failed: %s", i, kind, value)
                        results[pos] = self._error_result(kind, i, arg, value)
                        self._needs_reset.add(i)
        except BaseException:
            self.close()  # Ctrl-C or a bug mid-call: replies are in flight, the pool cannot go on
            raise
        self.last_timings = timings
        return results

    def _fail(self, kind: str, w: int, items: list[tuple[int, int, Any]], reason: str, results: list) -> None:
        for pos, i, arg in items:
            results[pos] = self._error_result(kind, i, arg, f"environment {i}: {reason}")
        self._restart(w, reason)

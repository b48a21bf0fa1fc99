"""A small process supervisor for `agilegan up`: start children in tiers, restart the ones that die, stop
them all (and reap every one) on a signal.

Why its own module: `up` once stopped the whole service when one child died, and left a worker
unreaped when it stopped: it stopped Redis together with the workers (so their shutdown, which talks to
Redis, could run past the wait), then killed the straggler without waiting for it, and exited. The
killed worker stayed a zombie of init's. Here:

- children belong to tiers, started in order (Redis, then the workers, then the API) and stopped in the
  reverse order, so a worker deregisters while Redis still answers and the API stops taking uploads
  before the workers go;
- every child that is signalled is waited for: SIGTERM, then SIGKILL after `stop_timeout_s`, then a
  `wait()` that reaps it; `stop()` returns only when no child is left;
- a child that dies on its own is logged (name, pid, exit status) and restarted after a backoff that
  doubles up to `max_backoff_s` and starts again from `backoff_s` once a child has stayed up for
  `stable_after_s`. `up` itself stops only on a signal.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class ChildSpec:
    """One supervised command. `tier`: start order (low first); stop order is the reverse."""

    name: str
    argv: tuple[str, ...]
    tier: int
    env: dict[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class SupervisorConfig:
    stop_timeout_s: float = 20.0  # SIGTERM → SIGKILL, per tier
    backoff_s: float = 1.0  # first restart delay
    max_backoff_s: float = 60.0
    stable_after_s: float = 60.0  # a child up this long restarts next time after `backoff_s` again
    poll_s: float = 0.2


@dataclasses.dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 0.0
    restart_at: float | None = None  # set while the child is dead and waiting for its restart


class Supervisor:
    """Runs `ChildSpec`s; `log` gets one line per event (start, exit, restart, stop)."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        config: SupervisorConfig = SupervisorConfig(),
        log: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.log = log
        self.children = [_Child(s, backoff_s=config.backoff_s) for s in sorted(specs, key=lambda s: s.tier)]

    def add(self, spec: ChildSpec) -> None:
        """Supervise one more command (started by `start`)."""
        self.children.append(_Child(spec, backoff_s=self.config.backoff_s))
        self.children.sort(key=lambda c: c.spec.tier)

    def start(self) -> None:
        """Start every child not yet running, lowest tier first."""
        for child in self.children:
            if child.proc is None:
                self._start(child)

    def pids(self) -> dict[str, int]:
        """name → pid of each running child."""
        return {c.spec.name: c.proc.pid for c in self.children if c.proc is not None and c.proc.poll() is None}

    def check(self) -> None:
        """One supervision pass: log and schedule the restart of each child that died; restart those due."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    child.restarts += 1
                    self._start(child)
                continue
            code = child.proc.poll() if child.proc is not None else None
            if code is None:
                continue
            if now - child.started_at >= self.config.stable_after_s:
                child.backoff_s = self.config.backoff_s
            self.log(
                f"{child.spec.name} (pid {child.proc.pid}) exited with {_status(code)} after "
                f"{now - child.started_at:.1f} s; restarting it in {child.backoff_s:g} s"
            )
            child.restart_at = now + child.backoff_s
            child.backoff_s = min(self.config.max_backoff_s, 2 * child.backoff_s)

    def run(self, stopped: Callable[[], bool], tick: Callable[[], None] | None = None) -> None:
        """Supervise until `stopped()` is true (a signal); `tick` runs on every pass (the ready line)."""
        while not stopped():
            self.check()
            if tick is not None:
                tick()
            time.sleep(self.config.poll_s)

    def stop(self) -> None:
        """Stop every child, highest tier first: SIGTERM the tier, wait up to `stop_timeout_s`, SIGKILL
        what is left, and reap each one. Returns when no child of this supervisor is left, zombies
        included."""
        for tier in sorted({c.spec.tier for c in self.children}, reverse=True):
            members = [c for c in self.children if c.spec.tier == tier and c.proc is not None]
            started = time.monotonic()
            for child in members:
                child.restart_at = None
                if child.proc.poll() is None:
                    child.proc.send_signal(signal.SIGTERM)
            deadline = started + self.config.stop_timeout_s
            for child in members:
                try:
                    child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.log(
                        f"{child.spec.name} (pid {child.proc.pid}) did not stop in "
                        f"{self.config.stop_timeout_s:g} s: killing it"
                    )
                    child.proc.kill()
                    child.proc.wait()  # reap: a killed child left unwaited outlives us as a zombie
                self.log(f"stopped {child.spec.name} (pid {child.proc.pid}) in {time.monotonic() - started:.1f} s")

    def _start(self, child: _Child) -> None:
        child.proc = _popen(child.spec)
        child.started_at = time.monotonic()
        verb = "restarted" if child.restarts else "started"
        self.log(f"{verb} {child.spec.name} (pid {child.proc.pid})")


def _popen(spec: ChildSpec) -> subprocess.Popen:
    """The child in a process group of its own, so a terminal's Ctrl-C reaches the supervisor alone and the
    children stop in tier order; on Linux it is sent SIGTERM should the supervisor itself die."""
    return subprocess.Popen(list(spec.argv), env=spec.env, process_group=0, preexec_fn=_term_on_parent_death)


def _term_on_parent_death() -> None:
    """In the child, before exec: PR_SET_PDEATHSIG (Linux), so a supervisor killed by SIGKILL leaves no
    orphans behind. Elsewhere nothing."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _status(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"

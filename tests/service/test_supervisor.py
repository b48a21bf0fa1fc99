"""The supervisor behind `agilegan up` (workers/launcher/supervisor.py), with real child processes: tiers stop in
reverse order, a child that ignores SIGTERM is killed and reaped, a dead child is restarted with a
doubling backoff, and the ready line waits for /readyz."""

from __future__ import annotations

import http.server
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from workers.launcher.supervisor import ChildSpec, Supervisor, SupervisorConfig
from workers.launcher.up import ReadyLine

# a child that records its SIGTERM with a timestamp, then exits after `delay` seconds
RECORDER = """
import signal, sys, time
name, path, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
def on_term(*_):
    with open(path, "a") as f:
        f.write(f"{name} {time.monotonic()}\\n")
    time.sleep(delay)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("up", flush=True)
while True:
    time.sleep(0.05)
"""


def _recorder(name: str, tier: int, record: Path, delay: float = 0.0) -> ChildSpec:
    return ChildSpec(name, (sys.executable, "-c", RECORDER, name, str(record), str(delay)), tier)


def _gone(pid: int) -> bool:
    """No such process, not even a zombie."""
    return not Path(f"/proc/{pid}").exists()


def test_tiers_stop_in_reverse_order_and_every_child_is_reaped(tmp_path: Path) -> None:
    record = tmp_path / "terms"
    specs = [
        _recorder("redis", 0, record),
        _recorder("worker-a", 1, record, delay=0.5),  # slow to stop: the tier below waits for it
        _recorder("worker-b", 1, record),
        _recorder("api", 2, record),
    ]
    lines: list[str] = []
    supervisor = Supervisor(specs, SupervisorConfig(stop_timeout_s=10), log=lines.append)
    supervisor.start()
    time.sleep(1.0)  # every child has installed its handler
    pids = supervisor.pids()
    supervisor.stop()
    order = [line.split()[0] for line in record.read_text().splitlines()]
    assert order[0] == "api" and sorted(order[1:3]) == ["worker-a", "worker-b"] and order[3] == "redis", order
    times = {line.split()[0]: float(line.split()[1]) for line in record.read_text().splitlines()}
    assert times["redis"] >= times["worker-a"] + 0.5  # Redis outlived the slow worker's shutdown
    assert all(_gone(pid) for pid in pids.values()), pids


def test_a_child_that_ignores_sigterm_is_killed_and_reaped(tmp_path: Path) -> None:
    stubborn = ChildSpec(
        "stubborn",
        (sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"),
        1,
    )
    lines: list[str] = []
    supervisor = Supervisor([stubborn], SupervisorConfig(stop_timeout_s=1), log=lines.append)
    supervisor.start()
    time.sleep(0.5)
    pid = supervisor.pids()["stubborn"]
    started = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - started < 5
    assert _gone(pid), Path(f"/proc/{pid}/stat").read_text()  # reaped: not left a zombie
    assert any("did not stop in 1 s: killing it" in line for line in lines), lines


def test_a_dead_child_is_restarted_with_a_doubling_backoff(tmp_path: Path) -> None:
    crasher = ChildSpec("crasher", (sys.executable, "-c", "raise SystemExit(3)"), 1)
    lines: list[str] = []
    config = SupervisorConfig(backoff_s=0.2, max_backoff_s=0.8, stable_after_s=60, poll_s=0.05)
    supervisor = Supervisor([crasher], config, log=lines.append)
    supervisor.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sum("restarting it in" in line for line in lines) < 5:
        supervisor.check()
        time.sleep(0.05)
    supervisor.stop()
    delays = [line.rsplit(" ", 2)[-2] for line in lines if "restarting it in" in line]
    assert delays[:5] == ["0.2", "0.4", "0.8", "0.8", "0.8"], lines
    assert all("exited with code 3" in line for line in lines if "restarting it in" in line)
    assert sum(line.startswith("restarted crasher") for line in lines) >= 4


def test_children_leave_with_the_supervisor_and_ignore_its_terminal_group(tmp_path: Path) -> None:
    """Each child has its own process group (a terminal's Ctrl-C goes to `up` alone, which stops them in
    order) and gets SIGTERM when the supervisor dies (PR_SET_PDEATHSIG)."""
    record = tmp_path / "terms"
    script = (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from workers.launcher.supervisor import ChildSpec, Supervisor;"
        "from tests.service.test_supervisor import _recorder;"
        f"s = Supervisor([_recorder('child', 1, __import__('pathlib').Path({str(record)!r}))], log=print); s.start();"
        "print('PID', s.pids()['child'], flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, os.getcwd()], stdout=subprocess.PIPE, text=True)
    child = int(next(line for line in parent.stdout if line.startswith("PID ")).split()[1])
    time.sleep(1.0)
    assert os.getpgid(child) == child != os.getpgid(parent.pid)
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and not (record.exists() and record.read_text().endswith("\n")):
        time.sleep(0.1)  # the file exists from the child's open(), its line once the child closes it
    assert record.read_text().startswith("child "), "the child got no SIGTERM when its supervisor died"


class _Flipping(http.server.BaseHTTPRequestHandler):
    """/readyz: 503 for the first `not_ready` requests, then 200; records when the first 200 went out."""

    not_ready = 3
    served: list[int] = []
    first_ok: list[float] = []

    def do_GET(self) -> None:  # noqa: N802
        status = 503 if len(self.served) < self.not_ready else 200
        self.served.append(status)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if status == 200 and not self.first_ok:
            self.first_ok.append(time.monotonic())

    def log_message(self, *args: object) -> None:
        pass


def test_the_ready_line_is_printed_only_once_readyz_answers() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flipping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = io.StringIO()
    ready = ReadyLine(f"http://127.0.0.1:{server.server_address[1]}", "ready: yes", every_s=0.0, out=out)
    try:
        polls = 0
        while not ready.printed and polls < 20:
            ready()
            polls += 1
            if _Flipping.served and _Flipping.served[-1] == 503:
                assert out.getvalue() == ""  # nothing before /readyz says ready
        assert out.getvalue() == "ready: yes\n" and _Flipping.served[:4] == [503, 503, 503, 200]
        ready()
        assert out.getvalue() == "ready: yes\n" and len(_Flipping.served) == 4  # once, and no more polls
    finally:
        server.shutdown()
    refused = ReadyLine("http://127.0.0.1:9", "never", every_s=0.0, out=out)
    refused()
    assert not refused.printed

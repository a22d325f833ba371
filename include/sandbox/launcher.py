"""The one sandbox launcher: start a sandbox process on a free loopback port, wait until it
answers, stop it. The demo, the tests, the compose-stack harness and the benchmarks all start
their sandbox here.

``serve`` prints :data:`~sandbox.server.READY_PREFIX` and its URL as its first stdout line once
it listens (``--port 0`` picks a free port), so the launcher learns the real port without a
race; it then waits for ``/_sandbox/health``.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sandbox.client import SandboxClient
from sandbox.server import READY_PREFIX

#: ``python -m sandbox``: needs only this package. Callers may pass another program with a
#: ``serve`` subcommand, e.g. ``gdpr-erasure sandbox`` (the command the compose file runs).
PYTHON_M_SANDBOX = (sys.executable, "-m", "sandbox")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class SandboxStartError(RuntimeError):
    """The sandbox did not start; the message ends with its stderr."""


@dataclass
class SandboxProcess:
    """A running sandbox process and its base URL.

    :param process: the process (started by :func:`start_sandbox`).
    :param url: its base URL (``http://127.0.0.1:PORT``).
    :param log_path: where its stderr goes, when the caller gave a file.
    """

    process: subprocess.Popen[str]
    url: str
    log_path: Path | None = None
    _stderr: IO[str] | None = field(default=None, repr=False)

    @property
    def client(self) -> SandboxClient:
        """A new client of its control API."""
        return SandboxClient(self.url)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (the sandbox exits 0 on it), then SIGKILL after ``timeout`` seconds.

        :param timeout: seconds to wait after SIGTERM.
        """
        _end(self.process, timeout)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def serve_command(*args: str, program: Sequence[str] = PYTHON_M_SANDBOX) -> list[str]:
    """``<program> serve --port 0 <args>``: the sandbox on a free loopback port.

    :param args: more ``serve`` options (``--regulation-seconds 2``, ``--fault ...``).
    :param program: the command before ``serve``.
    """
    return [*program, "serve", "--port", "0", *args]


def start_sandbox(
    *args: str,
    program: Sequence[str] = PYTHON_M_SANDBOX,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_path: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> SandboxProcess:
    """Start a sandbox and return once it answers its health check; the caller stops it.

    :param args: more ``serve`` options.
    :param program: the command before ``serve`` (default ``python -m sandbox``).
    :param env: the process's environment (default: this process's).
    :param cwd: its working directory.
    :param log_path: a file for its stderr (default: a temporary file, quoted on failure).
    :param timeout: seconds until it must answer.
    :raises SandboxStartError: it exited, printed something else, or did not answer in time.
    """
    stderr: IO[str] = open(log_path, "w") if log_path else tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
    process = subprocess.Popen(
        serve_command(*args, program=program),
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        # Its own session: a Ctrl-C meant for the caller reaches the sandbox only through stop().
        start_new_session=True,
    )
    if log_path:  # the child holds its own descriptor
        stderr.close()
    sandbox = SandboxProcess(process, "", log_path, None if log_path else stderr)
    deadline = time.monotonic() + timeout
    line = _first_line(process, timeout) or ""
    url = line.strip().removeprefix(READY_PREFIX)
    if line.startswith(READY_PREFIX):
        sandbox.url = url
        client = SandboxClient(url)
        while time.monotonic() < deadline and process.poll() is None:
            if client.healthy():
                return sandbox
            time.sleep(0.05)
    _end(process, STOP_TIMEOUT)
    text = _stderr_text(log_path, stderr)
    sandbox.stop()
    raise SandboxStartError(
        f"the sandbox did not start within {timeout:.0f} s (exit code {process.returncode}, "
        f"first line {line.strip()!r}); its stderr:\n{text}"
    )


@contextlib.contextmanager
def running_sandbox(*args: str, **options) -> Iterator[SandboxProcess]:
    """:func:`start_sandbox` for the ``with`` block, stopped at its end (even after an error).

    :param args: more ``serve`` options.
    :param options: the keyword arguments of :func:`start_sandbox`.
    """
    sandbox = start_sandbox(*args, **options)
    try:
        yield sandbox
    finally:
        sandbox.stop()


def _first_line(process: subprocess.Popen[str], timeout: float) -> str | None:
    """The first stdout line, or ``None`` if it does not come within ``timeout``. The reader then
    drains stdout until the process exits, so a full pipe can never block the sandbox."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:
        lines.put(stdout.readline())
        for _ in stdout:
            pass

    threading.Thread(target=read, daemon=True, name="sandbox-stdout").start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return None


def _end(process: subprocess.Popen[str], timeout: float) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _stderr_text(log_path: Path | None, stderr: IO[str], limit: int = 4000) -> str:
    if log_path:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
    else:
        stderr.seek(0)
        text = stderr.read()
    return text[-limit:] or "(empty)"

"""The one seam through which Forgeyard spawns processes, each in its own group; never a shell string."""

from __future__ import annotations

import collections
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.processgroup import KILL_GRACE_SECONDS, Terminator, group_alive, guard, signal_group, terminate_group

READER_DRAIN_SECONDS = 1.0  # after the group is gone, for a process outside it that still holds the pipe
_END_CHECK_SECONDS = 0.02  # how often the end of a group's termination is checked while its output is read
MAX_LINE_BYTES = 64 * 1024
CAPTURE_LIMIT_CHARS = 1024 * 1024
_READ_SIZE = 64 * 1024


class CancelToken:
    """Cooperative cancellation shared by a run: cancel() wakes all waiters and calls each callback once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._reason: str | None = None
        self._callbacks: dict[object, Callable[[], None]] = {}

    def cancel(self, reason: str = "cancelled") -> None:
        with self._lock:
            if self._reason is not None:
                return
            self._reason = reason
            callbacks, self._callbacks = list(self._callbacks.values()), {}
        self._event.set()
        _call_all(callbacks)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        return self._reason

    def add_callback(self, fn: Callable[[], None]) -> object:
        handle = object()
        with self._lock:
            if self._reason is None:
                self._callbacks[handle] = fn
                return handle
        fn()
        return handle

    def remove_callback(self, handle: object) -> None:
        with self._lock:
            self._callbacks.pop(handle, None)

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


def _call_all(callbacks: list[Callable[[], None]]) -> None:
    # One failing callback must not stop the others (each may be ending a different step).
    errors = []
    for fn in callbacks:
        try:
            fn()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@dataclass
class ProcessResult:
    exit_code: int | None  # None when killed by a signal we sent; 128+n for a signal we did not send
    timed_out: bool
    cancelled: bool
    duration: float  # seconds
    signal: int | None  # the signal that ended the main process, if any


class _LineSplitter:
    """Turns chunks of bytes into text lines as they arrive, cutting lines longer than MAX_LINE_BYTES; the lines
    completed by one chunk are handed on together."""

    def __init__(self, on_lines: Callable[[list[str]], None]) -> None:
        self._on_lines = on_lines
        self._buffer = bytearray()
        self.error: Exception | None = None

    def feed(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        end = buffer.rfind(b"\n") + 1
        lines = _short_lines(buffer[:end]) if len(buffer) - end <= MAX_LINE_BYTES else None
        if lines is None:
            self._cut(buffer)
        else:
            del buffer[:end]
            self._emit(lines)

    def _cut(self, buffer: bytearray) -> None:
        """Line by line, cutting lines longer than MAX_LINE_BYTES: the slow way, for chunks that may hold one."""
        start = 0
        lines = []
        while True:
            newline = buffer.find(b"\n", start, start + MAX_LINE_BYTES + 1)
            if newline != -1:
                lines.append(_text(buffer[start:newline]))
                start = newline + 1
            elif len(buffer) - start > MAX_LINE_BYTES:
                cut = _utf8_cut(buffer, start + MAX_LINE_BYTES, start)
                lines.append(_text(buffer[start:cut]))
                start = cut
            else:
                break
        del buffer[:start]
        self._emit(lines)

    def flush(self) -> None:
        if self._buffer:
            self._emit([_text(self._buffer)])
            self._buffer = bytearray()

    def _emit(self, lines: list[str]) -> None:
        if self.error is not None or not lines:
            return  # keep draining the pipe so the process never blocks on a full one
        try:
            self._on_lines(lines)
        except Exception as exc:
            self.error = exc  # re-raised in the caller's thread by run_streaming


def _short_lines(raw: bytes | bytearray) -> list[str] | None:
    """The lines of `raw` (complete lines only) as _text would give them one by one, decoded in one go; None when
    one of them may be over MAX_LINE_BYTES (a character is up to 4 bytes) and must be cut."""
    text = raw.decode("utf-8", errors="replace")  # a newline never sits inside a character, valid or not
    lines = text.split("\n")
    lines.pop()  # what follows the last newline: nothing
    if lines and max(map(len, lines)) > MAX_LINE_BYTES // 4:
        return None
    if "\r" in text:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines


def _text(raw: bytes | bytearray) -> str:
    return (raw[:-1] if raw.endswith(b"\r") else raw).decode("utf-8", errors="replace")


def _utf8_cut(buffer: bytearray, cut: int, floor: int) -> int:
    # Step back over UTF-8 continuation bytes (at most 3) so a chunk boundary does not split a character.
    for candidate in range(cut, max(floor, cut - 3) - 1, -1):
        if buffer[candidate] & 0xC0 != 0x80:
            return candidate if candidate > floor else cut
    return cut


def _spawn(argv: list[str], env: Mapping[str, str], cwd: str | Path,
           with_stdin: bool) -> tuple[subprocess.Popen, Callable[[], None], int, int | None]:
    """Start `argv` as the leader of a new process group guarded by a watchdog; returns it, what releases the
    group from the watchdog once it is gone, and its fds."""
    out_read, out_write = os.pipe()
    in_read, in_write = os.pipe() if with_stdin else (None, None)
    try:
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, close_fds=True, start_new_session=True,
            stdin=subprocess.DEVNULL if in_read is None else in_read,
            stdout=out_write, stderr=subprocess.STDOUT)  # one pipe keeps stdout/stderr in their true order
    except BaseException:
        _close(out_read, in_write)
        raise
    finally:
        _close(out_write, in_read)
    try:
        release = guard(proc.pid)  # start_new_session makes the process its group's leader
    except BaseException:
        signal_group(proc.pid, signal.SIGKILL)  # unguarded, the step must not run at all
        proc.wait()
        _close(out_read, in_write)
        raise
    return proc, release, out_read, in_write


def _close(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)


class _Pipes:
    """A step's output pipe (and stdin pipe, given data) served from the calling thread with poll(): no reader or
    writer thread per step, so a step costs no thread start-up and hand-over, which a loaded machine makes slow."""

    def __init__(self, out_fd: int, in_fd: int | None, stdin_data: bytes | None, splitter: _LineSplitter) -> None:
        self._out: int | None = out_fd
        self._in = in_fd
        self._data = memoryview(stdin_data or b"")
        self._splitter = splitter
        self._poller = select.poll()
        self._poller.register(out_fd, select.POLLIN)
        if in_fd is not None:
            os.set_blocking(in_fd, False)  # a process that never reads its stdin must not block the step
            self._poller.register(in_fd, select.POLLOUT)

    def serve(self, until_fd: int | None, deadline: float | None) -> bool:
        """Read output and write stdin as they are ready until `until_fd` is readable (True), the deadline passes
        (False), or, without `until_fd`, nothing is left to serve (True)."""
        if until_fd is not None:
            self._poller.register(until_fd, select.POLLIN)
        try:
            while until_fd is not None or self._out is not None or self._in is not None:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                # poll() takes an int of milliseconds: a timeout of weeks is waited for in slices.
                events = self._poller.poll(None if wait is None else min(wait, 86_400.0) * 1000)
                if not events and wait is not None and time.monotonic() >= deadline:
                    return False
                ended = False
                for fd, _ in events:
                    if fd == until_fd:
                        ended = True
                    elif fd == self._out:
                        self._read()
                    elif fd == self._in:
                        self._write()
                if ended:
                    return True
            return True
        finally:
            if until_fd is not None:
                self._poller.unregister(until_fd)

    def close(self) -> None:
        """Stop serving: close both pipes (the output's last line, if it has no newline, is passed on)."""
        self._close_in()
        self._close_out()

    def _read(self) -> None:
        data = os.read(self._out, _READ_SIZE)
        if data:
            self._splitter.feed(data)
        else:
            self._close_out()

    def _close_out(self) -> None:
        if self._out is not None:
            self._poller.unregister(self._out)
            os.close(self._out)
            self._out = None
            self._splitter.flush()

    def _write(self) -> None:
        try:
            self._data = self._data[os.write(self._in, self._data):]
        except BlockingIOError:
            return
        except BrokenPipeError:  # the process exited or closed stdin before reading it all
            self._data = self._data[:0]
        if not self._data:
            self._close_in()

    def _close_in(self) -> None:
        if self._in is not None:
            self._poller.unregister(self._in)
            os.close(self._in)
            self._in = None


def run_streaming(argv: list[str], *, env: Mapping[str, str], cwd: str | Path,
                  on_line: Callable[[str], None] | None = None, on_lines: Callable[[list[str]], None] | None = None,
                  timeout: float | None = None, cancel: CancelToken | None = None,
                  stdin_data: bytes | None = None, kill_grace: float = KILL_GRACE_SECONDS) -> ProcessResult:
    """Run `argv` with exactly `env`, passing each output line to `on_line` as it comes, or the lines of each read
    to `on_lines` (EventHub.log_many: a flood of output costs a call per chunk, not per line); both are called
    from the calling thread, which serves the pipes while it waits.

    Returns once the process and everything left in its group are gone. Raises OSError if `argv` cannot be
    started, and re-raises what `on_line` raised (after the process has ended; output is drained meanwhile).
    """
    started = time.monotonic()
    if cancel is not None and cancel.cancelled:
        return ProcessResult(None, False, True, 0.0, None)
    proc, release, out_fd, in_fd = _spawn(argv, env, cwd, stdin_data is not None)
    pgid = proc.pid
    terminator = Terminator(pgid, kill_grace)
    splitter = _LineSplitter(on_lines or (lambda lines: [on_line(line) for line in lines]))
    pipes = _Pipes(out_fd, in_fd, stdin_data, splitter)
    handle = cancel.add_callback(lambda: terminator.trigger("cancel")) if cancel is not None else None
    try:
        _serve_until_exit(pipes, pgid, timeout, terminator)
    finally:
        if cancel is not None:
            cancel.remove_callback(handle)
        proc.poll()  # reaps the leader if it exited: a zombie does not count as alive below
        # No process outlives its step: what is left in the group is ended, by the termination under way (timeout,
        # cancel) or a new one, while its output is still read.
        ending = terminator.disarm() or (_started(terminate_group, pgid, kill_grace) if group_alive(pgid) else None)
        if ending is not None:
            while ending.is_alive() and not pipes.serve(None, time.monotonic() + _END_CHECK_SECONDS):
                pass
            ending.join()
        proc.wait()
        release()
        # The pipe normally hits EOF once the group is gone, but a process that left it (setsid) may hold it.
        pipes.serve(None, time.monotonic() + READER_DRAIN_SECONDS)
        pipes.close()
    if splitter.error is not None:
        raise splitter.error
    return _result(proc.returncode, terminator.cause, time.monotonic() - started)


def _serve_until_exit(pipes: _Pipes, pid: int, timeout: float | None, terminator: Terminator) -> None:
    """Serve the pipes until process `pid` exits; once `timeout` seconds have passed, end its group (the
    terminator's thread waits out the grace) and go on. A pidfd (Linux 5.3+) tells the exit: no timer thread."""
    pidfd = os.pidfd_open(pid)
    try:
        if not pipes.serve(pidfd, None if timeout is None else time.monotonic() + timeout):
            terminator.trigger("timeout")
            pipes.serve(pidfd, None)
    finally:
        os.close(pidfd)


def _started(target: Callable[..., object], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _result(returncode: int, cause: str | None, duration: float) -> ProcessResult:
    sig = -returncode if returncode < 0 else None
    exit_code: int | None = returncode
    if sig is not None:
        exit_code = None if cause is not None else 128 + sig  # 128+n: what a shell reports for a signal death
    return ProcessResult(exit_code, cause == "timeout", cause == "cancel", duration, sig)


class _Tail:
    """The last `limit` characters' worth of lines."""

    def __init__(self, limit: int) -> None:
        self._lines: collections.deque[str] = collections.deque()
        self._size = 0
        self._limit = limit

    def append(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        while self._size > self._limit and len(self._lines) > 1:
            self._size -= len(self._lines.popleft()) + 1

    def text(self) -> str:
        return "\n".join(self._lines)


def run_captured(argv: list[str], *, env: Mapping[str, str], cwd: str | Path, timeout: float | None = None,
                 cancel: CancelToken | None = None, stdin_data: bytes | None = None,
                 limit: int = CAPTURE_LIMIT_CHARS) -> tuple[ProcessResult, str]:
    """run_streaming for short helper commands: returns about the last `limit` characters of output."""
    tail = _Tail(limit)
    result = run_streaming(argv, env=env, cwd=cwd, on_line=tail.append, timeout=timeout, cancel=cancel,
                           stdin_data=stdin_data)
    return result, tail.text()

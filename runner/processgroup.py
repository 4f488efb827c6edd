"""Process groups of steps: who is in one, how it is ended (SIGTERM, grace, SIGKILL), and its death watchdog."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

KILL_GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL of a step's process group
KILL_WAIT_SECONDS = 5.0  # how long SIGKILLed processes get to disappear (one stuck in D state may never)
_POLL_SECONDS = 0.02


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is still in group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False  # the fast path: a well-behaved step leaves nothing behind
    except PermissionError:
        pass  # a member we may not signal is still a member
    return bool(group_members(pgid))


def group_members(pgid: int) -> list[int]:
    """The pids of the live processes in group `pgid`, read from /proc.

    Zombies reparented to a non-reaping PID 1 (containers) still answer killpg(pgid, 0); they do not count.
    """
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(name))
    return members


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # gone, or nothing left we may signal
        os.killpg(pgid, sig)


def wait_group_empty(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


def terminate_group(pgid: int, grace: float = KILL_GRACE_SECONDS) -> bool:
    """SIGTERM group `pgid`, then SIGKILL what is left after `grace` seconds; True once the group is empty."""
    signal_group(pgid, signal.SIGTERM)
    signal_group(pgid, signal.SIGCONT)  # a stopped process would otherwise sit out the whole grace
    if wait_group_empty(pgid, grace):
        return True
    signal_group(pgid, signal.SIGKILL)
    return wait_group_empty(pgid, KILL_WAIT_SECONDS)


class Terminator:
    """Ends one process group once, on the first of timeout or cancellation, without blocking the caller."""

    def __init__(self, pgid: int, grace: float) -> None:
        self._pgid, self._grace = pgid, grace
        self._lock = threading.Lock()
        self._armed = True
        self._thread: threading.Thread | None = None
        self.cause: str | None = None  # "timeout" | "cancel"

    def trigger(self, cause: str) -> None:
        # Runs in the canceller's thread (maybe an API request), so the grace period is waited out elsewhere.
        with self._lock:
            if not self._armed or self.cause is not None:
                return
            self.cause = cause
            self._thread = threading.Thread(target=terminate_group, args=(self._pgid, self._grace),
                                            daemon=True)
            self._thread.start()

    def disarm(self) -> threading.Thread | None:
        """Ignore later triggers; returns the thread of a termination in progress, for the caller to wait for (so
        that no signal outlives the step), or None."""
        with self._lock:
            self._armed = False
            return self._thread


class Watchdog:
    """Kills the process groups it guards when this process dies first (SIGKILL, OOM killer), as our cleanup then
    cannot.

    A tiny shell in a session of its own reads "+ PGID" (guard) and "- PGID" (release) lines from a pipe whose write
    end only this process holds (both ends are close-on-exec and every child is spawned with close_fds): the kernel
    closes that end when we die, the read sees EOF and the shell SIGKILLs the groups still guarded. A thread, an
    atexit hook or PR_SET_PDEATHSIG (a preexec_fn, unsafe in a threaded worker, and tied to the spawning thread)
    cannot do this. A group is started first, so a death in the microseconds before it is guarded still leaks it.
    """

    SCRIPT = ('guarded=" "; while read -r op pgid; do case $op in +) guarded="$guarded$pgid ";; '
              '-) guarded="${guarded% $pgid *} ${guarded#* $pgid }";; esac; done; '  # stdin at EOF: we are gone
              'for pgid in $guarded; do kill -9 -"$pgid"; done')

    def __init__(self) -> None:
        read_fd, self._write_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                ["/bin/sh", "-c", self.SCRIPT, "forgeyard-watchdog"], env={}, cwd="/", close_fds=True,
                start_new_session=True,  # outside the steps' groups, and out of reach of signals sent to ours
                stdin=read_fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except BaseException:
            os.close(self._write_fd)
            raise
        finally:
            os.close(read_fd)

    def alive(self) -> bool:
        return self._proc.poll() is None

    def guard(self, pgid: int) -> None:
        os.write(self._write_fd, f"+ {pgid}\n".encode())

    def release(self, pgid: int) -> None:
        """Once group `pgid` is gone: forget it before the pgid can be reused."""
        with contextlib.suppress(OSError):  # a watchdog that was killed guards nothing anyway
            os.write(self._write_fd, f"- {pgid}\n".encode())

    def stop(self) -> None:
        """Once its groups are gone: end the watchdog before it can see EOF (a pgid may be reused), drop the pipe."""
        self._proc.kill()
        self._proc.wait()
        os.close(self._write_fd)


_scope = threading.local()  # `watchdog`: the calling thread's shared Watchdog (None until needed), in shared_watchdog


@contextlib.contextmanager
def shared_watchdog() -> Iterator[None]:
    """Within this block the process groups the calling thread starts share one watchdog, started with the first of
    them and stopped at the end: a job's steps pay for one, not for a fork and exec each (~3 ms a step)."""
    if hasattr(_scope, "watchdog"):  # nested: the outer block's watchdog serves
        yield
        return
    _scope.watchdog = None
    try:
        yield
    finally:
        watchdog = _scope.watchdog
        del _scope.watchdog
        if watchdog is not None:
            watchdog.stop()


def guard(pgid: int) -> Callable[[], None]:
    """Put group `pgid`, just started, under a watchdog: the thread's shared one, else one of its own.

    Returns what to call once the group is gone; raises OSError when no watchdog can guard it."""
    if not hasattr(_scope, "watchdog"):
        watchdog = Watchdog()
        try:
            watchdog.guard(pgid)
        except BaseException:
            watchdog.stop()
            raise
        return watchdog.stop
    shared = _scope.watchdog
    if shared is None or not shared.alive():  # not started yet, or killed by someone: a new one takes over
        if shared is not None:
            shared.stop()
        shared = _scope.watchdog = Watchdog()
    shared.guard(pgid)
    return lambda: shared.release(pgid)

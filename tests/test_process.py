"""Tests for runner.process with real processes: streaming, timeouts, cancellation, group cleanup."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runner import process, processgroup
from runner.process import CancelToken, run_captured, run_streaming
from runner.processgroup import terminate_group

pytestmark = pytest.mark.timeout(20)

ENV = {"PATH": os.environ["PATH"]}


def bash(script: str, tmp_path: Path, **kwargs) -> tuple[process.ProcessResult, list[str]]:
    lines: list[str] = []
    result = run_streaming(["bash", "-c", script], env=ENV, cwd=tmp_path, on_line=lines.append, **kwargs)
    return result, lines


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    return stat.rpartition(b")")[2].split()[0] != b"Z"


def read_pids(path: Path) -> list[int]:
    return [int(word) for word in path.read_text().split()]


@pytest.fixture(autouse=True)
def no_strays(tmp_path):
    """If a test fails, kill the processes it recorded in pid files (only those still running in tmp_path)."""
    yield
    for path in tmp_path.glob("pid*"):
        for pid in read_pids(path):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/cwd").startswith(str(tmp_path)):
                    os.kill(pid, signal.SIGKILL)


def in_thread(fn) -> tuple[threading.Thread, dict]:
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(result=fn()))
    thread.start()
    return thread, box


# --- output

def test_stdout_and_stderr_lines_keep_their_order(tmp_path):
    result, lines = bash("echo a; echo b >&2; echo c", tmp_path)
    assert lines == ["a", "b", "c"]
    assert (result.exit_code, result.timed_out, result.cancelled, result.signal) == (0, False, False, None)


def test_lines_arrive_while_the_process_still_runs(tmp_path):
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    first_line = threading.Event()
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        first_line.set()

    thread, box = in_thread(lambda: run_streaming(
        ["bash", "-c", "echo ready; read x < gate; echo after"], env=ENV, cwd=tmp_path, on_line=on_line))
    assert first_line.wait(5), "the first line was not streamed before the process finished"
    assert thread.is_alive() and lines == ["ready"]
    with open(fifo, "w") as gate:
        gate.write("go\n")
    thread.join(5)
    assert lines == ["ready", "after"] and box["result"].exit_code == 0


def test_final_line_without_newline_and_crlf(tmp_path):
    _, lines = bash(r"printf 'one\r\ntwo\rstill two\n\nlast'", tmp_path)
    assert lines == ["one", "two\rstill two", "", "last"]


def test_invalid_utf8_is_replaced(tmp_path):
    _, lines = bash(r"printf 'a\377b\n'", tmp_path)
    assert lines == ["a\ufffdb"]


def test_long_line_without_newline_is_cut_into_64k_chunks(tmp_path):
    lines: list[str] = []
    run_streaming([sys.executable, "-c", "import sys; sys.stdout.write('x' * 200_000)"],
                  env=ENV, cwd=tmp_path, on_line=lines.append)
    assert [len(line) for line in lines] == [65536, 65536, 65536, 200_000 - 3 * 65536]


def test_line_of_exactly_64k_stays_one_line(tmp_path):
    lines: list[str] = []
    run_streaming([sys.executable, "-c", "print('y' * 65536); print('z')"],
                  env=ENV, cwd=tmp_path, on_line=lines.append)
    assert [len(line) for line in lines] == [65536, 1]


def test_chunks_do_not_split_utf8_characters(tmp_path):
    text = "a" + "é" * 40_000  # 80,001 bytes: byte 65,536 falls inside an "é"
    lines: list[str] = []
    run_streaming([sys.executable, "-c", f"import sys; sys.stdout.write({text!r})"],
                  env={**ENV, "PYTHONIOENCODING": "utf-8"}, cwd=tmp_path, on_line=lines.append)
    assert len(lines) == 2 and "\ufffd" not in "".join(lines)
    assert "".join(lines) == text


def test_reads_split_in_one_go_give_the_lines_cut_one_by_one():
    # The splitter decodes a read's complete lines at once unless one may be too long; the lines must be those the
    # line-by-line cutter gives, whatever the reads' boundaries, invalid UTF-8, CRLF or long lines.
    rng = random.Random(7)
    pieces = [b"plain line\n", b"crlf\r\n", b"\r\n", b"\n", b"a\xff\xfe bad\n", "ünï ✓ 🚀\n".encode(), b"cut \xe2\x82",
              b"x" * 70_000, b"y" * 20_000 + b"\n", "é".encode() * 40_000, b"\r"]
    data = b"".join(rng.choice(pieces) for _ in range(200))
    for _ in range(10):
        cuts = sorted(rng.sample(range(1, len(data)), 40))
        fast: list[str] = []
        slow: list[str] = []
        fast_splitter, slow_splitter = process._LineSplitter(fast.extend), process._LineSplitter(slow.extend)
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            fast_splitter.feed(data[start:end])
            slow_splitter._buffer += data[start:end]
            slow_splitter._cut(slow_splitter._buffer)
        fast_splitter.flush()
        slow_splitter.flush()
        assert fast == slow


def test_output_is_passed_on_by_the_calling_thread_without_a_thread_per_step(tmp_path):
    seen: set[tuple[int, int]] = set()
    result = run_streaming(["bash", "-c", "echo one; sleep 0.1; echo two"], env=ENV, cwd=tmp_path, timeout=30,
                           on_line=lambda line: seen.add((threading.get_ident(), threading.active_count())))
    assert result.exit_code == 0 and seen == {(threading.get_ident(), threading.active_count())}


def test_many_lines_stream_in_order(tmp_path):
    count = 0

    def on_line(line: str) -> None:
        nonlocal count
        count += 1
        assert line == str(count)

    result = run_streaming(["seq", "1", "100000"], env=ENV, cwd=tmp_path, on_line=on_line)
    assert result.exit_code == 0 and count == 100_000


def test_on_line_error_is_raised_after_the_process_ends(tmp_path):
    def on_line(line: str) -> None:
        raise RuntimeError("sink down")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="sink down"):
        run_streaming(["seq", "1", "200000"], env=ENV, cwd=tmp_path, on_line=on_line)
    assert time.monotonic() - started < 5  # the pipe kept draining, so seq never blocked


# --- environment, stdin, exit codes

def test_env_is_exactly_what_is_passed(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGEYARD_TEST_LEAK", "leaked")
    lines: list[str] = []
    run_streaming(["env"], env={**ENV, "ONLY": "x"}, cwd=tmp_path, on_line=lines.append)
    assert sorted(lines) == sorted([f"PATH={ENV['PATH']}", "ONLY=x"])


def test_cwd_is_used(tmp_path):
    _, lines = bash("pwd", tmp_path)
    assert lines == [str(tmp_path)]


def test_stdin_is_devnull_by_default(tmp_path):
    result, lines = bash("cat; echo end", tmp_path)
    assert lines == ["end"] and result.exit_code == 0


def test_stdin_data_reaches_the_process(tmp_path):
    result, lines = bash("cat", tmp_path, stdin_data=b"hello\nworld")
    assert lines == ["hello", "world"] and result.exit_code == 0


def test_large_stdin_data_is_written_in_full(tmp_path):
    data = b"".join(b"%d\n" % n for n in range(200_000))
    _, lines = bash("wc -c", tmp_path, stdin_data=data)
    assert lines == [str(len(data))]


def test_stdin_data_ignored_by_the_process_does_not_hang(tmp_path):
    result, _ = bash("exit 0", tmp_path, stdin_data=b"x" * 1_000_000)
    assert result.exit_code == 0


@pytest.mark.parametrize(("script", "exit_code", "sig"), [
    ("exit 0", 0, None),
    ("exit 3", 3, None),
    ("exit 255", 255, None),
    ("kill -KILL $$", 128 + signal.SIGKILL, signal.SIGKILL),  # a signal we did not send: shell convention
])
def test_exit_codes(tmp_path, script, exit_code, sig):
    result, _ = bash(script, tmp_path)
    assert (result.exit_code, result.signal) == (exit_code, sig)
    assert not result.timed_out and not result.cancelled


def test_missing_program_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        run_streaming(["forgeyard-no-such-program"], env=ENV, cwd=tmp_path, on_line=lambda line: None)


def test_run_captured_keeps_the_tail(tmp_path):
    result, text = run_captured(["seq", "1", "1000"], env=ENV, cwd=tmp_path, limit=20)
    assert result.exit_code == 0
    assert text.endswith("999\n1000") and len(text) <= 20


# --- timeouts, cancellation, process groups

@pytest.mark.reliability
def test_timeout_kills_the_process(tmp_path):
    result, _ = bash("sleep 30", tmp_path, timeout=0.3)
    assert result.timed_out and not result.cancelled
    assert result.exit_code is None and result.signal == signal.SIGTERM
    assert result.duration < 3


@pytest.mark.reliability
def test_process_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    pids = tmp_path / "pids"
    script = "trap '' TERM; echo $$ > pids; sleep 30 & echo $! >> pids; echo started; wait"
    result, lines = bash(script, tmp_path, timeout=0.5, kill_grace=0.3)
    assert lines == ["started"]
    assert result.timed_out and result.exit_code is None and result.signal == signal.SIGKILL
    assert 0.8 <= result.duration < 3
    leader, child = read_pids(pids)
    assert not alive(leader) and not alive(child)
    assert not processgroup.group_alive(leader)


@pytest.mark.reliability
def test_background_child_does_not_outlive_the_step(tmp_path):
    result, _ = bash("sleep 300 & echo $! > pidfile; exit 0", tmp_path)
    (child,) = read_pids(tmp_path / "pidfile")
    assert result.exit_code == 0 and not result.timed_out
    assert not alive(child)
    assert result.duration < 3  # the child went on SIGTERM; the 5 s grace was not waited out


@pytest.mark.reliability
def test_background_child_ignoring_sigterm_is_killed(tmp_path):
    result, _ = bash("(trap '' TERM; exec sleep 300) & echo $! > pidfile", tmp_path, kill_grace=0.3)
    (child,) = read_pids(tmp_path / "pidfile")
    assert result.exit_code == 0 and not alive(child)


@pytest.mark.reliability
def test_cancel_from_another_thread(tmp_path):
    token = CancelToken()
    pids = tmp_path / "pids"

    def on_line(line: str) -> None:
        if line == "started":
            threading.Thread(target=token.cancel, args=("user",)).start()

    result = run_streaming(["bash", "-c", "echo $$ > pids; sleep 30 & echo $! >> pids; echo started; wait"],
                           env=ENV, cwd=tmp_path, on_line=on_line, cancel=token)
    assert result.cancelled and not result.timed_out and result.exit_code is None
    assert result.duration < 3
    assert not any(alive(pid) for pid in read_pids(pids))
    assert token.reason == "user"


@pytest.mark.reliability
def test_cancel_does_not_block_the_canceller(tmp_path):
    token = CancelToken()
    thread, box = in_thread(lambda: bash("trap '' TERM; echo started; sleep 30", tmp_path,
                                         cancel=token, kill_grace=1.0))
    time.sleep(0.3)
    started = time.monotonic()
    token.cancel()
    assert time.monotonic() - started < 0.5  # the grace period is waited out in another thread
    thread.join(5)
    assert box["result"][0].cancelled and box["result"][0].signal == signal.SIGKILL


def test_already_cancelled_token_starts_nothing(tmp_path):
    token = CancelToken()
    token.cancel()
    result, lines = bash("touch marker", tmp_path, cancel=token)
    assert result.cancelled and result.exit_code is None
    assert not (tmp_path / "marker").exists()


def test_run_releases_its_cancel_callback(tmp_path):
    token = CancelToken()
    bash("true", tmp_path, cancel=token)
    assert not token._callbacks


@pytest.mark.reliability
def test_process_that_left_the_group_does_not_hang_the_step(tmp_path):
    result, lines = bash("setsid sleep 30 & echo $! > pidfile; echo done", tmp_path)
    assert lines == ["done"] and result.exit_code == 0
    assert result.duration < 3


def test_terminate_group_of_empty_group(tmp_path):
    result, lines = bash("echo $$", tmp_path)
    assert terminate_group(int(lines[0]), grace=0.1)


# A "worker": two steps in threads, the second started once the first runs; it leaves its group (setsid) and so
# would keep the first step's group alive after the worker's death had the first watchdog's pipe leaked into it.
TWO_STEPS = """
import os, threading, time
from runner.process import run_streaming

def step(script):
    run_streaming(["bash", "-c", script], env={"PATH": os.environ["PATH"]}, cwd=".", on_line=print)

threading.Thread(target=step, args=("sleep 300 & echo $$ $! > pid1.tmp; mv pid1.tmp pid1; wait",)).start()
while not os.path.exists("pid1"):
    time.sleep(0.01)
threading.Thread(target=step, args=("setsid sleep 300 & echo $! > pid2.tmp; mv pid2.tmp pid2; wait",)).start()
threading.Event().wait()
"""


def children() -> set[int]:
    """This process's child processes, zombies included."""
    return {int(pid) for task in Path("/proc/self/task").iterdir()
            for pid in (task / "children").read_text().split()}


@pytest.mark.reliability
def test_a_killed_worker_takes_its_steps_process_groups_along(tmp_path):
    worker = subprocess.Popen([sys.executable, "-c", TWO_STEPS], cwd=tmp_path, start_new_session=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                              stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "pid2").exists():
            assert worker.poll() is None and time.monotonic() < deadline, "the steps did not start"
            time.sleep(0.02)
    finally:
        worker.kill()
        worker.wait()
    leader, child = read_pids(tmp_path / "pid1")
    deadline = time.monotonic() + 5
    while processgroup.group_alive(leader):
        assert time.monotonic() < deadline, "the dead worker's step group outlived it"
        time.sleep(0.02)
    (escaped,) = read_pids(tmp_path / "pid2")
    assert not alive(child)
    assert alive(escaped), "a process that left its group is not the watchdog's to kill"


def test_no_watchdog_outlives_its_step(tmp_path):
    before = children()
    result, _ = bash("sleep 0.2 & echo started", tmp_path)
    assert result.exit_code == 0
    assert children() <= before, "a process of the step (or its watchdog) was left, maybe as a zombie"


# --- CancelToken

def test_cancel_token_calls_each_callback_once():
    token = CancelToken()
    calls: list[str] = []
    token.add_callback(lambda: calls.append("a"))
    removed = token.add_callback(lambda: calls.append("removed"))
    token.remove_callback(removed)
    token.cancel("first")
    token.cancel("second")
    assert calls == ["a"] and token.cancelled and token.reason == "first"


def test_cancel_token_late_callback_runs_immediately():
    token = CancelToken()
    token.cancel()
    calls: list[int] = []
    token.add_callback(lambda: calls.append(1))
    assert calls == [1]


def test_cancel_token_failing_callback_does_not_stop_the_others():
    token = CancelToken()
    calls: list[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    token.add_callback(boom)
    token.add_callback(lambda: calls.append(1))
    with pytest.raises(RuntimeError):
        token.cancel()
    assert calls == [1] and token.cancelled


def test_cancel_token_wait():
    token = CancelToken()
    assert token.wait(0.01) is False and token.reason is None
    threading.Timer(0.05, token.cancel).start()
    assert token.wait(5) is True

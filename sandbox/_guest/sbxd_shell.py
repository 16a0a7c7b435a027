"""The guest daemon's shell: one persistent interactive bash on a pty, with job control.

Each command is written to a script that bash sources, followed by a sentinel line carrying a nonce, the exit
code and the working directory; output is what came before the sentinel, capped head and tail.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import selectors
import shlex
import signal
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable

from sbxd_output import CappedOutput
from sbxd_procs import kill_session, scratch_dir, spawn, watch_exit
from sbxd_wire import CHUNK, RequestError

GRACE_S = 0.5
RECOVERY_S = 1.0
START_TIMEOUT_S = 10.0
SENTINEL_WINDOW = 8192  # longer than any sentinel: 1 + nonce + exit code + PATH_MAX + separators

# Runs in the new session between fork and bash: adopt the pty as controlling terminal so bash gets job
# control, and undo Python's ignoring of SIGPIPE and SIGXFSZ, which exec would pass on to every command.
_CTTY_EXEC = (
    "import fcntl,os,signal,sys,termios;"
    "fcntl.ioctl(0,termios.TIOCSCTTY,0);"
    "[signal.signal(s,signal.SIG_DFL) for s in (signal.SIGPIPE,signal.SIGXFSZ)];"
    "os.execvp(sys.argv[1],sys.argv[1:])"
)
_BASH = ("bash", "--noprofile", "--norc", "--noediting", "-i")
_SHELL_SETUP = (
    "stty -echo -onlcr 2>/dev/null; PS1=; PS2=; PS0=; unset PROMPT_COMMAND HISTFILE; set +o history +H -m"
)


class ShellExited(Exception):
    """bash exited (the user ran `exit`, or it was killed)."""


def quiet_terminal(fd: int) -> None:
    """No echo, and no \\n -> \\r\\n translation, on the pty (either end will do on Linux)."""
    attrs = termios.tcgetattr(fd)
    attrs[1] &= ~termios.ONLCR
    attrs[3] &= ~(termios.ECHO | termios.ECHONL)
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def sentinel_command(nonce: str) -> str:
    """The line that makes bash print `nonce`, the last exit code and the working directory, \\036-separated."""
    return f'\\builtin printf \'\\036%s\\036%s\\036%s\\036\\n\' {nonce} "$?" "$PWD"'


def without_plumbing(nonces: tuple[str, ...]) -> Callable[[bytes], bytes]:
    """A cleaner of pty output: \\r\\n made \\n, lines naming one of `nonces` (xtrace of our own lines) dropped."""
    plumbing = re.compile(rb"[^\n]*(?:" + b"|".join(n.encode() for n in nonces) + rb")[^\n]*\n?")

    def clean(part: bytes) -> bytes:
        part = part.replace(b"\r\n", b"\n")
        return plumbing.sub(b"", part) if nonces else part

    return clean


class Shell:
    """One persistent interactive bash on a pty, with job control; commands run one at a time."""

    def __init__(self, workspace: str) -> None:
        self.workspace = workspace
        self.lock = threading.Lock()
        self.tap: Callable[[bytes], None] | None = None  # sees every byte read while a streamed command runs
        self.cut_r, self.cut_w = (
            os.pipe()
        )  # a byte here ends the running command's wait, as its timeout would
        for fd in (self.cut_r, self.cut_w):
            os.set_blocking(fd, False)
        self.scripts = scratch_dir()
        self._start()

    def _start(self) -> None:
        master, slave = os.openpty()
        quiet_terminal(master)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        env = dict(os.environ, TERM="dumb", PS1="", PS2="", PAGER="cat", GIT_PAGER="cat")
        for name in ("BASH_ENV", "ENV", "PROMPT_COMMAND", "HISTFILE"):
            env.pop(name, None)
        argv = [sys.executable, "-I", "-S", "-c", _CTTY_EXEC, *_BASH]
        try:
            self.proc = spawn(argv, self.workspace, slave, env)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.exited = threading.Event()
        self.wake_r, wake_w = os.pipe()
        watch_exit(self.proc, self.exited, wake_w)
        self.selector = selectors.DefaultSelector()
        self.selector.register(master, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.selector.register(self.cut_r, selectors.EVENT_READ)
        self.pending = bytearray()
        nonce = secrets.token_hex(8)
        self._send(f"{_SHELL_SETUP}; {sentinel_command(nonce)}\n")
        try:
            found = self._pump(time.monotonic() + START_TIMEOUT_S, nonce, (), CappedOutput(0))
        except ShellExited:
            found = None
        if found is None:
            self.close()
            raise RuntimeError("bash did not start on its pty")

    def close(self) -> None:
        """Kill bash's whole session and close the pty."""
        kill_session(self.proc.pid)
        self.exited.wait(2.0)
        self.selector.close()
        for fd in (self.master, self.wake_r):
            try:
                os.close(fd)
            except OSError:
                pass

    def _restart(self) -> None:
        self.close()
        self._start()

    def _send(self, line: str) -> None:
        try:
            os.write(self.master, line.encode("utf-8"))
        except OSError:
            raise ShellExited from None

    def _read(self) -> bytes:
        """Whatever the pty holds now; raises ShellExited once every slave end is closed."""
        try:
            data = os.read(self.master, CHUNK)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                raise ShellExited from None
            raise
        if not data:
            raise ShellExited
        if self.tap is not None:
            self.tap(data)
        return data

    def _pump(self, deadline: float, target: str, strip: tuple[str, ...], out: CappedOutput) -> tuple | None:
        """Read until the sentinel of `target`; (exit code, cwd) or None at the deadline.

        Sentinels of the nonces in `strip` (an aborted line that printed late) are removed from the output.
        """
        alternatives = b"|".join(n.encode() for n in (target, *strip))
        pattern = re.compile(rb"\x1e(" + alternatives + rb")\x1e(-?\d+)\x1e(.*?)\x1e\r?\n", re.S)
        while True:
            while (match := pattern.search(self.pending)) is not None:
                if match.group(1) == target.encode():
                    found = int(match.group(2)), match.group(3).decode("utf-8", "replace")
                    out.add(self.pending[: match.start()])
                    del self.pending[: match.end()]  # what follows (job notices) opens the next call's output
                    return found
                del self.pending[match.start() : match.end()]
            if len(self.pending) > SENTINEL_WINDOW:
                out.add(self.pending[:-SENTINEL_WINDOW])
                del self.pending[:-SENTINEL_WINDOW]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                for key, _ in self.selector.select(remaining):
                    if key.fd == self.wake_r:
                        raise ShellExited
                    if key.fd == self.cut_r:
                        if self._take_cut():
                            return None
                        continue
                    self.pending += self._read()
            except ShellExited:
                self._drain_after_exit()
                out.add(self.pending)
                self.pending.clear()
                raise

    def _drain(self) -> None:
        try:
            while data := self._read():
                self.pending += data
        except ShellExited:
            pass

    def _drain_after_exit(self) -> None:
        """bash is gone, but its last words may still be in transit through the pty: read until EIO or quiet."""
        self.selector.unregister(self.wake_r)
        deadline = time.monotonic() + GRACE_S
        try:
            while self.selector.select(deadline - time.monotonic()):
                self.pending += self._read()
        except ShellExited:
            pass

    def _write_script(self, nonce: str, command: str) -> str:
        if not os.path.isdir(self.scripts):  # the user may have removed it
            self.scripts = scratch_dir()
        path = os.path.join(self.scripts, f"{nonce}.sh")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(command if command.endswith("\n") else command + "\n")
        return path

    def _signal_foreground(self, sig: int) -> None:
        """SIGINT the foreground group (as ^C does); SIGKILL it only when it is not bash's own group."""
        try:
            group = os.tcgetpgrp(self.master)
        except OSError:
            group = self.proc.pid
        if sig == signal.SIGKILL and group == self.proc.pid:
            return
        try:
            os.killpg(group, sig)
        except OSError:
            pass

    def run(
        self, command: str, timeout: float, limit: int, tap: Callable[[bytes], None] | None = None
    ) -> dict:
        """Run `command` within `timeout` seconds; the reply has the capped output, exit code and cwd.

        `tap`, when given, sees the pty's raw bytes as they come (sentinels included: see sbxd_stream.py).
        """
        deadline = time.monotonic() + timeout
        if not self.lock.acquire(timeout=max(timeout, 0.001)):
            raise RequestError("internal", "the shell is still busy with another command")
        try:
            self._take_cut()  # an interrupt that came between two commands is not for this one
            self.tap = tap
            return self._run_locked(command, deadline, limit)
        finally:
            self.tap = None
            self.lock.release()

    def interrupt(self) -> dict:
        """End the running command as its timeout would (SIGINT, then SIGKILL); a no-op when none runs."""
        if self.lock.locked():
            try:
                os.write(self.cut_w, b"x")
            except BlockingIOError:
                pass
        return {"ok": True}

    def _take_cut(self) -> bool:
        """Empty the cut pipe; whether a command was running to be cut."""
        try:
            while os.read(self.cut_r, 64):
                pass
        except BlockingIOError:
            pass
        return self.lock.locked()

    def _run_locked(self, command: str, deadline: float, limit: int) -> dict:
        out = CappedOutput(limit)
        restarted = timed_out = False
        if self.exited.is_set():
            self._restart()
            restarted = True
        quiet_terminal(self.master)  # a user's `stty echo` would show our own command lines
        self._drain()
        nonce, again = secrets.token_hex(8), secrets.token_hex(8)
        script = self._write_script(nonce, command)
        found = None
        try:
            self._send(f"\\builtin . {shlex.quote(script)} </dev/null; {sentinel_command(nonce)}\n")
            found = self._pump(deadline, nonce, (), out)
            if found is None:
                timed_out = True
                found = self._recover(nonce, again, out)
        except ShellExited:
            self.exited.wait(2.0)
            code = self.proc.returncode
            found = (code if code is not None and code >= 0 else None, self.workspace)
            self._restart()
            restarted = True
        finally:
            try:
                os.unlink(script)
            except OSError:
                pass
        if found is None:  # bash is wedged: start afresh
            self._restart()
            restarted = True
            found = (None, self.workspace)
        text, truncated = out.text(clean=without_plumbing((nonce, again)))
        return {
            "ok": True,
            "exit_code": None if timed_out else found[0],
            "output": text,
            "timed_out": timed_out,
            "truncated": truncated,
            "cwd": found[1],
            "shell_restarted": restarted,
        }

    def _recover(self, nonce: str, again: str, out: CappedOutput) -> tuple | None:
        """Interrupt (then kill) the timed-out command and ask bash for a fresh sentinel.

        The fresh one is needed because an interrupted command line is aborted before its own sentinel;
        bash reads the request only once the line is over, so the old sentinel, if printed, comes first.
        """
        self._signal_foreground(signal.SIGINT)
        self._send(f"{sentinel_command(again)}\n")
        found = self._pump(time.monotonic() + GRACE_S, again, (nonce,), out)
        if found is None:
            self._signal_foreground(signal.SIGKILL)
            found = self._pump(time.monotonic() + RECOVERY_S, again, (nonce,), out)
        return found

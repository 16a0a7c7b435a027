"""Guest daemon of one sandbox: a persistent shell, kernel supervision and workspace files over a unix socket.

Runs inside the container (stdlib only) and, for tests, directly on a host. Frames, both directions: a 4-byte
big-endian header length, a UTF-8 JSON header, then `header["payload"]` raw bytes when that key is present.
One request per connection, one thread per connection; shell commands run one at a time.
"""

from __future__ import annotations

import argparse
import codecs
import errno
import fcntl
import json
import os
import re
import secrets
import selectors
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import traceback

SOCKET_NAME = "sbxd.sock"
SOCKET_SUBDIR = "guest"  # where the host lets the daemon bind, when it made one; frozen once bound
KERNEL_FILE = "kernel.json"
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 1 << 30
MAX_OUTPUT_LIMIT = 64 << 20
MAX_TIMEOUT_S = 24 * 3600.0
CHUNK = 1 << 16
IDLE_TIMEOUT_S = 60.0
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


def truncation_marker(omitted: int) -> str:
    # The format of sandbox._output.truncation_marker; the guest cannot import the package.
    return f"\n[... output truncated: {omitted} bytes omitted ...]\n"


class RequestError(Exception):
    """A request that fails with a typed error reply."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class ShellExited(Exception):
    """bash exited (the user ran `exit`, or it was killed)."""


def recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(min(size - len(buf), CHUNK))
        if not chunk:
            raise RequestError("bad_request", "connection closed in the middle of a frame")
        buf += chunk
    return bytes(buf)


def recv_header(sock: socket.socket) -> dict:
    (size,) = struct.unpack(">I", recv_exact(sock, 4))
    if size > MAX_HEADER:
        raise RequestError("bad_request", f"header of {size} bytes is over the {MAX_HEADER} byte cap")
    try:
        header = json.loads(recv_exact(sock, size).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError("bad_request", f"header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("op"), str):
        raise RequestError("bad_request", "header must be a JSON object with a string 'op'")
    return header


def send_frame(sock: socket.socket, header: dict, payload: bytes = b"") -> None:
    data = json.dumps(header).encode("utf-8")
    sock.sendall(struct.pack(">I", len(data)) + data + payload)


def error_reply(kind: str, message: str) -> dict:
    return {"ok": False, "error": {"type": kind, "message": message}}


def number(header: dict, name: str, default: float, maximum: float, kind: type = int) -> float:
    value = header.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise RequestError("bad_request", f"'{name}' must be a non-negative number")
    if kind is int and not isinstance(value, int):
        raise RequestError("bad_request", f"'{name}' must be an integer")
    return min(value, maximum)


def session_members(sid: int) -> list[int]:
    """Pids of living (not zombie) processes whose session is `sid` (Linux /proc)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != b"Z":
            pids.append(int(name))
    return pids


def kill_session(sid: int, timeout: float = 2.0) -> None:
    """SIGKILL a whole session, background jobs in their own groups included, and wait until it is gone.

    A SIGKILLed process lives on until the kernel schedules its death; waiting makes "closed" mean "no job left".
    """
    deadline = time.monotonic() + timeout
    while members := session_members(sid):  # by session, not by pid: a reaped leader's pid may be reused
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if time.monotonic() >= deadline:
            return
        time.sleep(0.005)


def _scratch_dir() -> str:
    """Where command scripts go: the daemon's own tmpfs when the host gave one, so a full /tmp does no harm."""
    own = "/run/sbxd"
    base = own if os.path.isdir(own) and os.access(own, os.W_OK) else None
    return tempfile.mkdtemp(prefix=".sbxd-", dir=base)


def spawn(argv: list[str], cwd: str, stdio: int, env: dict | None) -> subprocess.Popen:
    """Start `argv` in a session (and so a process group) of its own, with all three stdio on `stdio`."""
    return subprocess.Popen(
        argv, cwd=cwd, stdin=stdio, stdout=stdio, stderr=stdio, env=env, start_new_session=True
    )


def watch_exit(proc: subprocess.Popen, done: threading.Event, wake_fd: int | None = None) -> None:
    """Reap `proc` in a thread, so its death is known at once."""

    def wait() -> None:
        proc.wait()
        if wake_fd is not None:  # before `done`, so whoever waits on `done` may close the other end
            os.write(wake_fd, b"x")
            os.close(wake_fd)
        done.set()

    threading.Thread(target=wait, name=f"reap-{proc.pid}", daemon=True).start()


class Payload:
    """The raw bytes that follow a request header."""

    def __init__(self, sock: socket.socket, size: int) -> None:
        self.sock = sock
        self.remaining = size

    def chunks(self):  # type: ignore[no-untyped-def]
        while self.remaining:
            chunk = self.sock.recv(min(self.remaining, CHUNK))
            if not chunk:
                raise RequestError("bad_request", "connection closed before the whole payload came")
            self.remaining -= len(chunk)
            yield chunk

    def discard(self) -> None:
        try:
            for _ in self.chunks():
                pass
        except (RequestError, OSError):
            pass


class CappedOutput:
    """Keeps the head and a rolling tail of a byte stream, never more than `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.head_max = limit * 3 // 4
        self.tail_max = limit - self.head_max
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes | bytearray) -> None:
        self.total += len(data)
        room = self.head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_max:
            self.tail += data[-self.tail_max :]
            del self.tail[: max(0, len(self.tail) - self.tail_max)]

    def text(self, hide: tuple[str, ...] = ()) -> tuple[str, bool]:
        """The output as text, and whether it was cut; lines naming a nonce in `hide` (xtrace) are dropped."""
        plumbing = re.compile(rb"[^\n]*(?:" + b"|".join(n.encode() for n in hide) + rb")[^\n]*\n?")
        head, tail = (bytes(part).replace(b"\r\n", b"\n") for part in (self.head, self.tail))
        if hide:
            head, tail = plumbing.sub(b"", head), plumbing.sub(b"", tail)
        if self.total == len(self.head) + len(self.tail):
            return (head + tail).decode("utf-8", "replace"), False
        while tail[:1] and tail[0] & 0xC0 == 0x80:  # a character cut in half at the start of the tail
            tail = tail[1:]
        omitted = self.total - len(self.head) - len(self.tail)
        head_text = codecs.getincrementaldecoder("utf-8")("replace").decode(head, final=False)
        return head_text + truncation_marker(omitted) + tail.decode("utf-8", "replace"), True


def quiet_terminal(fd: int) -> None:
    """No echo, and no \\n -> \\r\\n translation, on the pty (either end will do on Linux)."""
    attrs = termios.tcgetattr(fd)
    attrs[1] &= ~termios.ONLCR
    attrs[3] &= ~(termios.ECHO | termios.ECHONL)
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def sentinel_command(nonce: str) -> str:
    return f'\\builtin printf \'\\036%s\\036%s\\036%s\\036\\n\' {nonce} "$?" "$PWD"'


class Shell:
    """One persistent interactive bash on a pty, with job control; commands run one at a time."""

    def __init__(self, workspace: str) -> None:
        self.workspace = workspace
        self.lock = threading.Lock()
        self.scripts = _scratch_dir()
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
            self.scripts = _scratch_dir()
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

    def run(self, command: str, timeout: float, limit: int) -> dict:
        deadline = time.monotonic() + timeout
        if not self.lock.acquire(timeout=max(timeout, 0.001)):
            raise RequestError("internal", "the shell is still busy with another command")
        try:
            return self._run_locked(command, deadline, limit)
        finally:
            self.lock.release()

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
        text, truncated = out.text(hide=(nonce, again))
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


KERNEL_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sbxkernel.py")


class Kernel:
    """Supervises `sbxkernel.py -f <connection file>` (an IPython kernel) in its own process group.

    The kernel connects to sockets the host listens on; those it binds itself go to a private directory.
    """

    def __init__(self, connection_file: str, cwd: str) -> None:
        self.connection_file = connection_file
        self.cwd = cwd
        self.private_dir = _scratch_dir()
        self.lock = threading.RLock()
        self.proc: subprocess.Popen | None = None
        self.exited = threading.Event()
        self.restarts = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and not self.exited.is_set()

    def status(self) -> dict:
        pid = self.proc.pid if self.alive and self.proc else None
        return {"ok": True, "alive": self.alive, "pid": pid, "restarts": self.restarts}

    def start(self) -> dict:
        with self.lock:
            if self.alive:
                return self.status()
            if not os.path.isfile(self.connection_file):
                raise RequestError("internal", f"no kernel connection file at {self.connection_file}")
            self._clear_private_dir()
            argv = [sys.executable, KERNEL_LAUNCHER, "-f", self.connection_file]
            # The shell keeps the image's headless Agg backend; the kernel shows figures inline.
            env = {
                **os.environ,
                "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                "SBXD_KERNEL_DIR": self.private_dir,
            }
            self.proc = spawn(argv, self.cwd, subprocess.DEVNULL, env)
            self.exited = threading.Event()
            watch_exit(self.proc, self.exited)
            return self.status()

    def _clear_private_dir(self) -> None:
        """Remove a dead kernel's socket files (the user may have removed the directory too)."""
        if not os.path.isdir(self.private_dir):
            self.private_dir = _scratch_dir()
        for name in os.listdir(self.private_dir):
            try:
                os.unlink(os.path.join(self.private_dir, name))
            except OSError:
                pass

    def stop(self) -> None:
        with self.lock:
            if self.proc is not None and self.alive:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.exited.wait(5.0)

    def restart(self) -> dict:
        with self.lock:
            self.stop()
            self.restarts += 1
            return self.start()

    def interrupt(self) -> dict:
        with self.lock:
            if self.proc is not None and self.alive:
                try:
                    os.kill(self.proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
            return self.status()


def file_entry(path: str, st: os.stat_result) -> dict:
    return {"path": path, "size": st.st_size, "is_dir": stat.S_ISDIR(st.st_mode), "mtime": st.st_mtime}


class Workspace:
    """Workspace-relative paths that cannot leave the workspace, and the file operations on them."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        umask = os.umask(0)
        os.umask(umask)
        self.file_mode = 0o666 & ~umask

    def resolve(self, path: object, *, allow_root: bool = False) -> tuple[str, str]:
        """(normalised relative path, real absolute path); refuses absolute, `..` and symlink escapes."""
        if not isinstance(path, str) or "\x00" in path or len(path) > 4096:
            raise RequestError("invalid_path", "path must be a string without NUL bytes")
        if path.startswith("/"):
            raise RequestError("invalid_path", f"absolute path refused: {path}")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise RequestError("invalid_path", f"'..' refused in {path}")
        if not parts and not allow_root:
            raise RequestError("invalid_path", "a file path is required")
        real = os.path.realpath(os.path.join(self.root, *parts))
        if real != self.root and not real.startswith(self.root + os.sep):
            raise RequestError("invalid_path", f"{path} leaves the workspace through a symlink")
        return "/".join(parts), real

    def read(self, header: dict, sock: socket.socket) -> None:
        _, real = self.resolve(header.get("path"))
        max_bytes = number(header, "max_bytes", MAX_PAYLOAD, MAX_PAYLOAD)
        try:  # NONBLOCK: opening a FIFO must not hang us
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RequestError("not_found", f"no such file: {header['path']}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RequestError("invalid_path", "path ends in a symlink") from None
            raise
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise RequestError("is_directory", f"{header['path']} is a directory")
            if not stat.S_ISREG(st.st_mode):
                raise RequestError("invalid_path", f"{header['path']} is not a regular file")
            if st.st_size > max_bytes:
                raise RequestError("too_large", f"file has {st.st_size} bytes, over the {max_bytes} byte cap")
            os.set_blocking(fd, True)
            send_frame(sock, {"ok": True, "payload": st.st_size, "size": st.st_size})
            with open(fd, "rb", closefd=False) as f:
                sock.sendfile(
                    f, 0, st.st_size
                )  # if the file shrinks meanwhile, the client sees a short frame
        finally:
            os.close(fd)

    def write(self, header: dict, sock: socket.socket) -> dict:
        size = number(header, "payload", 0, MAX_PAYLOAD + 1)
        max_bytes = number(header, "max_bytes", MAX_PAYLOAD, MAX_PAYLOAD)
        if size > max_bytes:  # the host checks this before sending, so no payload is on its way in vain
            raise RequestError("too_large", f"{size} bytes is over the {max_bytes} byte cap")
        payload = Payload(sock, size)
        try:
            rel, real = self.resolve(header.get("path"))
            self._store(rel, real, payload)
        except (RequestError, OSError):
            payload.discard()  # the client may still be sending; unread data would cost it our reply
            raise
        return {"ok": True, **file_entry(rel, os.stat(real))}

    def _store(self, rel: str, real: str, payload: Payload) -> None:
        """Write to a temporary file next to `real` and rename it into place: never a partial file."""
        if os.path.isdir(real):
            raise RequestError("is_directory", f"{rel} is a directory")
        parent = os.path.dirname(real)
        try:
            os.makedirs(parent, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise RequestError("invalid_path", f"a parent of {rel} is not a directory") from None
        if os.path.realpath(parent) != parent:  # a symlink appeared since resolve
            raise RequestError("invalid_path", f"{rel} leaves the workspace through a symlink")
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".sbxd-write-")
        try:
            with open(fd, "wb") as f:
                for chunk in payload.chunks():
                    f.write(chunk)
            os.chmod(tmp, self.file_mode)
            os.replace(tmp, real)
        except BaseException as exc:
            os.unlink(tmp)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise RequestError("too_large", f"no room for {rel}: {exc.strerror}") from None
            raise

    def list(self, header: dict) -> dict:
        rel, real = self.resolve(header.get("path", ""), allow_root=True)
        try:
            scan = os.scandir(real)
        except FileNotFoundError:
            raise RequestError("not_found", f"no such directory: {rel or '.'}") from None
        except NotADirectoryError:
            raise RequestError("invalid_path", f"{rel} is not a directory") from None
        entries = []
        with scan:
            for entry in scan:
                st = entry.stat(follow_symlinks=False)  # links are listed as links, never followed
                path = f"{rel}/{entry.name}" if rel else entry.name
                entries.append(file_entry(path, st))
        entries.sort(key=lambda e: e["path"])
        return {"ok": True, "entries": entries}


class Daemon:
    def __init__(self, directory: str, workspace: str) -> None:
        self.directory = directory
        own = os.path.join(directory, SOCKET_SUBDIR)
        self.socket_dir = own if os.path.isdir(own) else directory
        self.socket_path = os.path.join(self.socket_dir, SOCKET_NAME)
        self.workspace = Workspace(workspace)
        self.shell = Shell(self.workspace.root)
        self.kernel = Kernel(os.path.join(directory, KERNEL_FILE), self.workspace.root)
        self.ops = {
            "ping": lambda h, s: self.ping(),
            "shell": lambda h, s: self.run_shell(h),
            "write": self.workspace.write,
            "read": self.workspace.read,
            "list": lambda h, s: self.workspace.list(h),
            "kernel_start": lambda h, s: self.kernel.start(),
            "kernel_restart": lambda h, s: self.kernel.restart(),
            "kernel_interrupt": lambda h, s: self.kernel.interrupt(),
            "kernel_status": lambda h, s: self.kernel.status(),
        }

    def ping(self) -> dict:
        return {
            "ok": True,
            "pid": os.getpid(),
            "uid": os.getuid(),
            "hostname": socket.gethostname(),
            "kernel_alive": self.kernel.alive,
        }

    def run_shell(self, header: dict) -> dict:
        command = header.get("command")
        if not isinstance(command, str):
            raise RequestError("bad_request", "'command' must be a string")
        timeout = number(header, "timeout", 30.0, MAX_TIMEOUT_S, float)
        limit = number(header, "limit", 64 * 1024, MAX_OUTPUT_LIMIT)
        return self.shell.run(command, timeout, int(limit))

    def serve_connection(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(IDLE_TIMEOUT_S)
            try:
                header = recv_header(conn)
                handler = self.ops.get(header["op"])
                if handler is None:
                    raise RequestError("bad_request", f"unknown op {header['op']!r}")
                reply = handler(header, conn)
            except RequestError as exc:
                reply = error_reply(exc.kind, exc.message)
            except (ConnectionError, TimeoutError):
                return
            except Exception as exc:
                traceback.print_exc()
                message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                reply = error_reply("internal", f"{type(exc).__name__}: {message}")
            if reply is not None:
                try:
                    send_frame(conn, reply)
                except OSError:
                    pass

    def listen(self) -> socket.socket:
        """Bind under a temporary name and rename into place, so the socket's appearance means ready."""
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        temporary = os.path.join(self.socket_dir, f".sbxd-{secrets.token_hex(4)}.sock")
        server.bind(temporary)
        os.chmod(temporary, 0o666)
        server.listen(64)
        os.replace(temporary, self.socket_path)
        return server

    def serve_forever(self, server: socket.socket) -> None:
        """Accept connections until a signal handler raises; call from the main thread.

        A process-directed signal may land on any thread, and then a main thread blocked in accept() would never
        run the handler; the wakeup pipe makes every signal wake the main thread's select.
        """
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        with selectors.DefaultSelector() as selector:
            selector.register(server, selectors.EVENT_READ)
            selector.register(wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is server:
                        conn, _ = server.accept()
                        threading.Thread(target=self.serve_connection, args=(conn,), daemon=True).start()
                    else:
                        os.read(wake_r, 512)

    def shutdown(self) -> None:
        self.kernel.stop()
        self.shell.close()
        shutil.rmtree(self.shell.scripts, ignore_errors=True)
        shutil.rmtree(self.kernel.private_dir, ignore_errors=True)
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="private directory shared with the host")
    parser.add_argument("--workspace", required=True)
    args = parser.parse_args(argv)
    os.umask(0o022)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    daemon = Daemon(args.dir, args.workspace)
    try:
        if os.path.isfile(daemon.kernel.connection_file):
            try:
                daemon.kernel.start()
            except Exception:
                traceback.print_exc()
        server = daemon.listen()
        print(f"sbxd: ready on {daemon.socket_path}", file=sys.stderr, flush=True)
        daemon.serve_forever(server)
    finally:
        daemon.shutdown()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()

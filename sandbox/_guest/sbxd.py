"""Guest daemon of one sandbox: a persistent shell, kernel supervision and workspace files over a unix socket.

Runs inside the container (stdlib only) and, for tests, directly on a host, always as a script: its modules
(`sbxd_*.py` beside it) are imported by their plain names. One request per connection, one thread per
connection; shell commands run one at a time. The frames are in `sbxd_wire.py`.

Before a memory checkpoint (gVisor saves no socket bound or connected on the host) the host asks the daemon
to `quiesce`: it closes its listening socket and accepts nothing until SIGUSR2, sent after the restore, makes
it listen again.
"""

from __future__ import annotations

import argparse
import os
import secrets
import selectors
import shutil
import signal
import socket
import sys
import threading
import traceback

from sbxd_background import Processes
from sbxd_egress import EgressForwarder
from sbxd_memory import MemoryWatch
from sbxd_output import DEFAULT_OUTPUT_LIMIT
from sbxd_ports import Ports
from sbxd_shell import Shell
from sbxd_stream import StreamTap
from sbxd_supervisor import Kernel
from sbxd_wire import RequestError, error_reply, number, recv_header, send_frame
from sbxd_workspace import Workspace

SOCKET_NAME = "sbxd.sock"
SOCKET_SUBDIR = "guest"  # where the host lets the daemon bind, when it made one; frozen once bound
KERNEL_FILE = "kernel.json"
MAX_OUTPUT_LIMIT = 64 << 20
MAX_TIMEOUT_S = 24 * 3600.0
IDLE_TIMEOUT_S = 60.0
QUIESCE_TIMEOUT_S = 5.0


class Daemon:
    """Answers the host's requests: ping, shell, read, write, list and the kernel ops."""

    def __init__(self, directory: str, workspace: str) -> None:
        self.directory = directory
        own = os.path.join(directory, SOCKET_SUBDIR)
        self.socket_dir = own if os.path.isdir(own) else directory
        self.socket_path = os.path.join(self.socket_dir, SOCKET_NAME)
        self.workspace = Workspace(workspace)
        self.shell = Shell(self.workspace.root)
        self.kernel = Kernel(os.path.join(directory, KERNEL_FILE), self.workspace.root)
        self.processes = Processes(self.workspace.root)
        self.ports = Ports()
        self._quiesce = threading.Event()  # asked for by a connection's thread
        self._quiesced = threading.Event()  # done by the main thread: the listening socket is closed
        self._relisten = threading.Event()  # SIGUSR2
        self._wake_w: int | None = None
        self._open = 0  # connections being served now
        self._open_lock = threading.Lock()
        self.ops = {
            "ping": lambda h, s: self.ping(),
            "shell": self.run_shell,
            "shell_interrupt": lambda h, s: self.shell.interrupt(),
            "write": self.workspace.write,
            "read": self.workspace.read,
            "list": lambda h, s: self.workspace.list(h),
            "kernel_start": lambda h, s: self.kernel.start(),
            "kernel_restart": lambda h, s: self.kernel.restart(),
            "kernel_interrupt": lambda h, s: self.kernel.interrupt(),
            "kernel_status": lambda h, s: self.kernel.status(),
            "proc_start": lambda h, s: self.processes.start(h),
            "proc_list": lambda h, s: self.processes.list(h),
            "proc_get": lambda h, s: self.processes.get(h),
            "proc_output": self.processes.output,
            "proc_stdin": self.processes.stdin,
            "proc_signal": lambda h, s: self.processes.signal(h),
            "port_connect": self.ports.connect,
            "quiesce": lambda h, s: self.quiesce(),
        }

    def ping(self) -> dict:
        """Who and where the daemon is, and whether the kernel is alive."""
        return {
            "ok": True,
            "pid": os.getpid(),
            "uid": os.getuid(),
            "hostname": socket.gethostname(),
            "kernel_alive": self.kernel.alive,
        }

    def quiesce(self) -> dict:
        """Have the main thread close the listening socket; answered once it is closed (on this connection).

        Refused while other connections are open (a call, a process's output followed, a port connection):
        a checkpoint would cut them, and gVisor saves no socket connected to the host.
        """
        if self._wake_w is None:
            raise RequestError("internal", "the daemon is not serving")
        with self._open_lock:
            others = self._open - 1
        if others > 0:
            raise RequestError(
                "busy",
                f"{others} other connection(s) to the sandbox are open (a call, a process's output being"
                " followed, or a port connection)",
            )
        self._quiesced.clear()
        self._quiesce.set()
        os.write(self._wake_w, b"q")
        if not self._quiesced.wait(QUIESCE_TIMEOUT_S):
            raise RequestError(
                "internal", f"the listening socket was not closed within {QUIESCE_TIMEOUT_S:g} s"
            )
        return {"ok": True, "listening": False}

    def relisten_on_signal(self, signum: int, frame: object) -> None:
        """SIGUSR2: listen again after a quiesce (the restore of a checkpoint)."""
        self._relisten.set()

    def run_shell(self, header: dict, conn: socket.socket) -> dict:
        """Run the request's command in the shell, within its timeout and output limit.

        With `stream` set, output chunks go to the host as they come (frames with a `chunk`) before the reply.
        """
        command = header.get("command")
        if not isinstance(command, str):
            raise RequestError("bad_request", "'command' must be a string")
        timeout = number(header, "timeout", 30.0, MAX_TIMEOUT_S, float)
        limit = number(header, "limit", DEFAULT_OUTPUT_LIMIT, MAX_OUTPUT_LIMIT)
        tap = StreamTap(conn, int(limit)) if header.get("stream") is True else None
        return self.shell.run(command, timeout, int(limit), tap)

    def _counted(self, conn: socket.socket) -> None:
        """`serve_connection` for a connection counted as open when it was accepted."""
        try:
            self.serve_connection(conn)
        finally:
            with self._open_lock:
                self._open -= 1

    def serve_connection(self, conn: socket.socket) -> None:
        """Read one request from `conn`, answer it, close it; failures become typed error replies."""
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
        self._wake_w = wake_w
        listening: socket.socket | None = server
        with selectors.DefaultSelector() as selector:
            selector.register(server, selectors.EVENT_READ)
            selector.register(wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is listening and listening is not None:
                        conn, _ = listening.accept()
                        with self._open_lock:
                            self._open += 1
                        try:
                            threading.Thread(target=self._counted, args=(conn,), daemon=True).start()
                        except RuntimeError:
                            # No thread to be had (the sandbox is at its process limit): answer inline.
                            self._counted(conn)
                    elif key.fileobj == wake_r:
                        try:
                            os.read(wake_r, 512)
                        except BlockingIOError:
                            pass
                if self._quiesce.is_set() and listening is not None:
                    selector.unregister(listening)
                    listening.close()
                    listening = None
                    self._relisten.clear()
                    self._quiesce.clear()
                    self._quiesced.set()
                elif self._quiesce.is_set():
                    self._quiesce.clear()
                    self._quiesced.set()
                if self._relisten.is_set() and listening is None:
                    self._relisten.clear()
                    try:
                        listening = self.listen()
                    except OSError:
                        traceback.print_exc()  # the host sends the signal again once the directory is open
                    else:
                        selector.register(listening, selectors.EVENT_READ)
                        print(f"sbxd: listening again on {self.socket_path}", file=sys.stderr, flush=True)

    def shutdown(self) -> None:
        """Stop the kernel and the shell, remove their scratch directories and the socket."""
        self.kernel.stop()
        self.processes.shutdown()
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
    """Command line: serve until SIGTERM or SIGINT, then clean up and exit 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="private directory shared with the host")
    parser.add_argument("--workspace", required=True)
    args = parser.parse_args(argv)
    os.umask(0o022)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    daemon = Daemon(args.dir, args.workspace)
    signal.signal(signal.SIGUSR2, daemon.relisten_on_signal)
    try:
        if os.path.isfile(daemon.kernel.connection_file):
            try:
                daemon.kernel.start()
            except Exception:
                traceback.print_exc()
        server = daemon.listen()
        watch = MemoryWatch.from_environment()
        if watch is not None:
            watch.start()
        forwarder = EgressForwarder.from_environment()
        if forwarder is not None:
            try:
                forwarder.start()
            except OSError:
                traceback.print_exc()  # the sandbox's egress stays shut; its other calls still work
        print(f"sbxd: ready on {daemon.socket_path}", file=sys.stderr, flush=True)
        daemon.serve_forever(server)
    finally:
        daemon.shutdown()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()

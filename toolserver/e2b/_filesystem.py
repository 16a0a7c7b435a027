"""envd's filesystem: the Connect service (list, stat, make dir, move, remove) and `/files` (read, write).

Reads, writes and listings use the session's files API; make dir, move and remove run as short background
processes in the sandbox (its guest daemon), so they never wait behind the session's shell.
"""

from __future__ import annotations

import asyncio
import posixpath
import shlex
import time
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.envd.filesystem import filesystem_pb as pb
from protobuf.wkt import Timestamp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from foundation.errors import NotFound, UserError
from sandbox.errors import WorkspaceFileNotFound
from toolserver.e2b._auth import sandbox_caller
from toolserver.e2b._paths import absolute, relative
from toolserver.e2b._records import RECORD_FILE
from toolserver.e2b._rpc import rpc_caller, rpc_error
from toolserver.service.processes import ProcessService

__all__ = ["EnvdFilesystem", "files_routes"]

MAX_ENTRIES = 10_000
_LIST_CONCURRENCY = 8
_RUN_WAIT_S = 10.0
_RUN_DEADLINE_S = 60.0  # mkdir, mv and rm of a workspace path
_RUN_KEEP = 2000


def _entry(rel: str, size: int, is_dir: bool, mtime: float) -> pb.EntryInfo:
    seconds = int(mtime)
    return pb.EntryInfo(
        name=posixpath.basename(rel) or "workspace",
        type=pb.FileType.DIRECTORY if is_dir else pb.FileType.FILE,
        path=absolute(rel),
        size=size,
        mode=0o755 if is_dir else 0o644,
        permissions="drwxr-xr-x" if is_dir else "-rw-r--r--",
        owner="user",
        group="user",
        modified_time=Timestamp(seconds=seconds, nanos=int((mtime - seconds) * 1e9)),
    )


class EnvdFilesystem:
    """`filesystem.Filesystem` over the session's workspace."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self.processes = ProcessService(svc.sessions)

    async def _listing(self, who: Any, sid: str, rel: str) -> list[Any]:
        entries = await self.svc.sessions.list_files(who, sid, rel)
        return [e for e in entries if e.path != RECORD_FILE]

    async def _stat(self, who: Any, sid: str, rel: str) -> pb.EntryInfo:
        if not rel:
            return _entry("", 0, True, 0.0)
        parent = posixpath.dirname(rel)
        for e in await self._listing(who, sid, parent):
            if e.path == rel:
                return _entry(e.path, e.size, e.is_dir, e.mtime)
        raise WorkspaceFileNotFound(f"{absolute(rel)} does not exist", path=absolute(rel))

    async def _run(self, who: Any, sid: str, argv: list[str]) -> None:
        """Run `argv` in the sandbox and wait for it; UserError with its output when it fails."""
        info = await self.processes.start(who, sid, shlex.join(argv))
        offset, text = 0, ""
        deadline = time.monotonic() + _RUN_DEADLINE_S
        while True:
            asked = time.monotonic()
            out = await self.processes.output(who, sid, info.pid, offset, _RUN_WAIT_S)
            text = (text + "".join(c.data for c in out.chunks))[-_RUN_KEEP:]  # a tail is all an error shows
            offset = out.next_offset
            if out.done:
                break
            if time.monotonic() > deadline:
                raise UserError(f"{argv[0]} did not finish within {_RUN_DEADLINE_S:g} s")
            if not out.chunks and time.monotonic() - asked < 0.05:
                await asyncio.sleep(0.2)  # an answer that did not wait: pace the loop
        if out.process.exit_code:
            raise UserError(text.strip()[-500:] or f"{argv[0]} failed", exit_code=out.process.exit_code)

    async def stat(self, request: pb.StatRequest, ctx: Any) -> pb.StatResponse:
        who, sid = await rpc_caller(self.svc.auth, ctx)
        try:
            return pb.StatResponse(entry=await self._stat(who, sid, relative(request.path)))
        except Exception as exc:
            raise rpc_error(exc) from None

    async def list_dir(self, request: pb.ListDirRequest, ctx: Any) -> pb.ListDirResponse:
        who, sid = await rpc_caller(self.svc.auth, ctx)
        try:
            depth = max(int(request.depth or 1), 1)
            out: list[pb.EntryInfo] = []
            level = [relative(request.path)]
            for _ in range(depth):
                found = []
                for at in range(0, len(level), _LIST_CONCURRENCY):  # a bounded fan-out per request
                    batch = level[at : at + _LIST_CONCURRENCY]
                    found += await asyncio.gather(*(self._listing(who, sid, d) for d in batch))
                level = []
                for entries in found:
                    for e in entries:
                        out.append(_entry(e.path, e.size, e.is_dir, e.mtime))
                        if e.is_dir:
                            level.append(e.path)
                if len(out) > MAX_ENTRIES:
                    raise UserError(f"over {MAX_ENTRIES} entries: list with a smaller depth")
            return pb.ListDirResponse(entries=out)
        except Exception as exc:
            raise rpc_error(exc) from None

    async def make_dir(self, request: pb.MakeDirRequest, ctx: Any) -> pb.MakeDirResponse:
        who, sid = await rpc_caller(self.svc.auth, ctx)
        rel = relative(request.path)
        try:
            try:
                await self._stat(who, sid, rel)
            except WorkspaceFileNotFound:
                await self._run(who, sid, ["mkdir", "-p", "--", absolute(rel)])
                return pb.MakeDirResponse(entry=await self._stat(who, sid, rel))
        except Exception as exc:
            raise rpc_error(exc) from None
        raise ConnectError(Code.ALREADY_EXISTS, f"{absolute(rel)} already exists")

    async def move(self, request: pb.MoveRequest, ctx: Any) -> pb.MoveResponse:
        who, sid = await rpc_caller(self.svc.auth, ctx)
        try:
            source, dest = relative(request.source), relative(request.destination)
            await self._stat(who, sid, source)
            await self._run(who, sid, ["mv", "--", absolute(source), absolute(dest)])
            return pb.MoveResponse(entry=await self._stat(who, sid, dest))
        except Exception as exc:
            raise rpc_error(exc) from None

    async def remove(self, request: pb.RemoveRequest, ctx: Any) -> pb.RemoveResponse:
        who, sid = await rpc_caller(self.svc.auth, ctx)
        try:
            rel = relative(request.path)
            if not rel:
                raise UserError("the workspace itself cannot be removed")
            await self._stat(who, sid, rel)
            await self._run(who, sid, ["rm", "-rf", "--", absolute(rel)])
            return pb.RemoveResponse()
        except Exception as exc:
            raise rpc_error(exc) from None

    async def watch_dir(self, request: Any, ctx: Any) -> Any:
        raise ConnectError(Code.UNIMPLEMENTED, "watching directories is not supported by this server")
        yield  # a server stream

    async def create_watcher(self, request: Any, ctx: Any) -> Any:
        raise ConnectError(Code.UNIMPLEMENTED, "watching directories is not supported by this server")

    async def get_watcher_events(self, request: Any, ctx: Any) -> Any:
        raise ConnectError(Code.UNIMPLEMENTED, "watching directories is not supported by this server")

    async def remove_watcher(self, request: Any, ctx: Any) -> Any:
        raise ConnectError(Code.UNIMPLEMENTED, "watching directories is not supported by this server")


class FilesHTTP:
    """envd's `/files` (download, upload) and `/health`."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc

    async def read(self, request: Request) -> Response:
        who, sid = await sandbox_caller(self.svc.auth, request.headers)
        rel = relative(request.query_params.get("path", ""))
        data = await self.svc.sessions.read_file(who, sid, rel)
        return Response(data, media_type="application/octet-stream")

    async def write(self, request: Request) -> Response:
        who, sid = await sandbox_caller(self.svc.auth, request.headers)
        given = request.query_params.get("path")
        uploads: list[tuple[str, bytes]] = []
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            max_bytes = self.svc.settings.max_file_mb * 1024 * 1024
            async with request.form(max_files=64, max_part_size=max_bytes) as form:
                parts = form.getlist("file")
                for part in parts:
                    name = given if given and len(parts) == 1 else getattr(part, "filename", None)
                    if not name or isinstance(part, str):
                        raise UserError("each uploaded file needs a path (its filename)")
                    uploads.append((name, await part.read()))
        else:
            if not given:
                raise UserError("path is required", field="path")
            if request.headers.get("content-encoding", "") not in ("", "identity"):
                raise UserError("compressed uploads are not supported: send the file without gzip")
            uploads.append((given, await request.body()))
        out = []
        for path, data in uploads:
            rel = relative(path)
            await self.svc.sessions.write_file(who, sid, rel, data)
            out.append({"name": posixpath.basename(rel), "type": "file", "path": absolute(rel)})
        return JSONResponse(out)

    async def health(self, request: Request) -> Response:
        """204 while the named sandbox lives; 502 once it is gone (what E2B's proxy answers then)."""
        who, sid = await sandbox_caller(self.svc.auth, request.headers)
        try:
            await self.svc.sessions.get(who, sid)
        except NotFound:
            return JSONResponse({"code": 502, "message": f"sandbox {sid} not found"}, status_code=502)
        return Response(status_code=204)


def files_routes(files: FilesHTTP) -> list[Route]:
    return [
        Route("/files", files.read, methods=["GET"]),
        Route("/files", files.write, methods=["POST"]),
        Route("/health", files.health, methods=["GET"]),
    ]

"""The "Sessions" page: the namespace's sandboxes; for one, a shell, a Python console and its files."""

from __future__ import annotations

import mimetypes
import posixpath
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from toolserver import api
from toolserver.console.connection import Connection, guarded
from toolserver.console.render import python_result_html

__all__ = ["build"]

_KEPT_CELLS = 12  # the console shows the newest cells; older ones drop off the top
_KEPT_SHELL_CHARS = 60_000
_VIEW_BYTES = 2_000_000


def _session_choice(info: api.Session) -> tuple[str, str]:
    return f"{info.id} ({info.status}, {info.image or 'default image'})", info.id


def _cell_html(code: str, cell_html: str) -> str:
    return f'<div class="ts-step" data-kind="cell"><div class="ts-pre">&gt;&gt;&gt; {escape(code)}</div>{cell_html}</div>'


def _files_table(entries: list[api.FileEntry]) -> list[list[Any]]:
    return [[e.path + ("/" if e.is_dir else ""), e.size] for e in sorted(entries, key=lambda e: e.path)]


def build(app: gr.Blocks, conn: Connection, key: gr.State) -> None:
    """The page's components and events, inside the current tab."""
    with gr.Row():
        session = gr.Dropdown(
            label="Session", choices=[], allow_custom_value=True, scale=3, elem_id="sessions-pick"
        )
        reload = gr.Button("Refresh", scale=0)
        create = gr.Button("New session", scale=0, elem_id="sessions-new")
        delete = gr.Button("Delete session", variant="stop", scale=0)
    with gr.Tabs():
        with gr.Tab("Shell"):
            shell_log = gr.Code(label="Shell", language="shell", interactive=False, elem_id="shell-log")
            with gr.Row():
                command = gr.Textbox(label="Command", scale=5, elem_id="shell-command")
                run_shell = gr.Button("Run", variant="primary", scale=0, elem_id="shell-run")
        with gr.Tab("Python"):
            cells = gr.HTML(elem_id="python-cells")
            code = gr.Code(label="Cell", language="python", lines=4, elem_id="python-code")
            with gr.Row():
                run_cell = gr.Button("Run cell", variant="primary", elem_id="python-run")
                restart = gr.Button("Restart kernel")
        with gr.Tab("Files"):
            with gr.Row():
                folder = gr.Textbox("", label="Folder (empty: the workspace)", scale=3, elem_id="files-dir")
                list_files = gr.Button("List", scale=0, elem_id="files-list")
            files = gr.Dataframe(headers=["path", "bytes"], interactive=False, elem_id="files-table")
            upload = gr.File(label="Upload into the folder", file_count="multiple", elem_id="files-upload")
            with gr.Row():
                path = gr.Textbox(label="File", scale=3, elem_id="files-path")
                view = gr.Button("View", scale=0, elem_id="files-view")
                download = gr.Button("Download", scale=0, elem_id="files-download")
            text_view = gr.Code(label="Text", interactive=False, visible=False, elem_id="files-text")
            image_view = gr.Image(label="Image", interactive=False, visible=False, elem_id="files-image")
            fetched = gr.File(label="Downloaded", interactive=False, visible=False, elem_id="files-fetched")
    shell_text = gr.State("")
    cell_list = gr.State([])

    def sessions(tab_key: str, chosen: str | None) -> Any:
        if not conn.has_key(tab_key):
            return gr.skip()
        listed = conn.client(tab_key).sessions()
        ids = [s.id for s in listed]
        return gr.update(
            choices=[_session_choice(s) for s in listed], value=chosen if chosen in ids else None
        )

    def new_session(tab_key: str) -> Any:
        client = conn.client(tab_key)
        made = client.session(keep=True)
        gr.Info(f"Session {made.id} is ready.")
        return gr.update(choices=[_session_choice(s) for s in client.sessions()], value=made.id)

    def delete_session(tab_key: str, chosen: str | None) -> Any:
        client = conn.client(tab_key)
        client.attach(_chosen(chosen)).delete()
        return gr.update(choices=[_session_choice(s) for s in client.sessions()], value=None)

    def shell(tab_key: str, chosen: str | None, line: str, log: str) -> tuple[str, str, str]:
        result = conn.client(tab_key).attach(_chosen(chosen)).shell(line, timeout_s=60)
        output = result.output if result.output.endswith("\n") or not result.output else result.output + "\n"
        status = "timed out" if result.timed_out else f"exit {result.exit_code}"
        log = f"{log}$ {line}\n{output}# {status}, cwd {result.cwd}\n"[-_KEPT_SHELL_CHARS:]
        return log, log, ""

    def python(tab_key: str, chosen: str | None, source: str, shown: list[str]) -> tuple[str, list[str]]:
        if not source.strip():
            raise gr.Error("write some Python first")
        result = conn.client(tab_key).attach(_chosen(chosen)).python(source, timeout_s=60)
        shown = [*shown, _cell_html(source, python_result_html(result))][-_KEPT_CELLS:]
        return "".join(shown), shown

    def restart_kernel(tab_key: str, chosen: str | None) -> tuple[str, list[str]]:
        conn.client(tab_key).attach(_chosen(chosen)).restart_python()
        gr.Info("A fresh kernel: variables are gone, files stay.")
        return "", []

    def listing(tab_key: str, chosen: str | None, directory: str) -> list[list[Any]]:
        return _files_table(conn.client(tab_key).attach(_chosen(chosen)).files.list(directory.strip()))

    def put(tab_key: str, chosen: str | None, directory: str, uploaded: list[str] | None) -> Any:
        handle = conn.client(tab_key).attach(_chosen(chosen))
        for local in uploaded or []:
            target = posixpath.join(directory.strip(), Path(local).name)
            handle.files.write(target, Path(local).read_bytes())
            gr.Info(f"Uploaded {target}")
        return _files_table(handle.files.list(directory.strip())), None

    def show(tab_key: str, chosen: str | None, file: str) -> tuple[Any, Any]:
        data = conn.client(tab_key).attach(_chosen(chosen)).files.read(_path(file))
        mime = mimetypes.guess_type(file)[0] or ""
        if mime.startswith("image/") and mime != "image/svg+xml":
            local = conn.scratch_file(file, data)
            return gr.update(visible=False), gr.update(value=local, visible=True)
        try:
            text = data[:_VIEW_BYTES].decode("utf-8")
        except UnicodeDecodeError:
            text = f"({len(data)} bytes that are not UTF-8 text: use Download)"
        return gr.update(value=text, visible=True), gr.update(visible=False)

    def fetch(tab_key: str, chosen: str | None, file: str) -> Any:
        data = conn.client(tab_key).attach(_chosen(chosen)).files.read(_path(file))
        return gr.update(value=conn.scratch_file(file, data), visible=True)

    for trigger in (app.load, key.change, reload.click):
        trigger(guarded(conn.url, sessions), [key, session], [session])
    create.click(guarded(conn.url, new_session), [key], [session])
    delete.click(guarded(conn.url, delete_session), [key, session], [session])
    shell_inputs = [key, session, command, shell_text]
    shell_outputs = [shell_log, shell_text, command]
    for shell_trigger in (run_shell.click, command.submit):
        shell_trigger(guarded(conn.url, shell), shell_inputs, shell_outputs)
    run_cell.click(guarded(conn.url, python), [key, session, code, cell_list], [cells, cell_list])
    restart.click(guarded(conn.url, restart_kernel), [key, session], [cells, cell_list])
    list_files.click(guarded(conn.url, listing), [key, session, folder], [files])
    upload.upload(guarded(conn.url, put), [key, session, folder, upload], [files, upload])
    view.click(guarded(conn.url, show), [key, session, path], [text_view, image_view])
    download.click(guarded(conn.url, fetch), [key, session, path], [fetched])


def _chosen(session_id: str | None) -> str:
    if not session_id:
        raise gr.Error("choose a session (or make a new one) first")
    return session_id


def _path(file: str) -> str:
    if not file.strip():
        raise gr.Error("name a file of the workspace first")
    return file.strip()

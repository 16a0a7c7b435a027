"""A PEP 503 package index on a loopback address, with one small wheel, for egress tests."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

INDEX_HOST = "127.0.0.2"  # loopback (Linux routes 127/8 to lo), and not in a sandbox's NO_PROXY
PACKAGE = "demo_pkg"  # `import demo_pkg; demo_pkg.VALUE == 42`


def wheel(name: str, version: str) -> tuple[str, bytes]:
    """A minimal pure-Python wheel that pip accepts."""
    dist = f"{name}-{version}"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}.dist-info/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{dist}.dist-info/RECORD", record)
    return f"{dist}-py3-none-any.whl", buffer.getvalue()


@contextmanager
def package_index(root: Path, extra: dict[str, bytes] | None = None) -> Iterator[str]:
    """Serve an index of PACKAGE (plus `extra` files at the top) from `root`; yields `host:port`."""
    filename, data = wheel(PACKAGE, "1.0")
    digest = hashlib.sha256(data).hexdigest()
    (root / "simple" / "demo-pkg").mkdir(parents=True)
    (root / "files").mkdir()
    (root / "files" / filename).write_bytes(data)
    (root / "simple" / "demo-pkg" / "index.html").write_text(
        f'<a href="../../files/{filename}#sha256={digest}">{filename}</a>\n'
    )
    (root / "hello").write_text("hello from the index\n")
    for name, content in (extra or {}).items():
        (root / name).write_bytes(content)
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer((INDEX_HOST, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{INDEX_HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()

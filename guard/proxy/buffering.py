"""Request buffering: a body received in full before its request is admitted.

As nginx's `proxy_request_buffering on`: a trickling or aborted upload then holds no
active-transaction slot and never reaches a backend. The body is kept in memory up to
`limits.body_buffer_size`; past it, in an anonymous temporary file in `limits.body_temp_dir`
(the system's temporary folder by default). The file has no name (O_TMPFILE where the system
has it, else unlinked at once), so nothing is left behind after a crash; it is closed when
the request ends. client_max_size bounds it (checked by the parser on every chunk).
"""

from __future__ import annotations

import tempfile
from typing import IO, Final

READ_SIZE: Final = 64 * 1024  # what a spilled body is sent to the backend in, per write


class BodyBuffer:
    """The body so far: chunks in memory, or, past `limit` bytes, an anonymous file.
    Disk errors raise OSError; the request then fails with 500."""

    __slots__ = ("chunks", "file", "limit", "size", "temp_dir")

    def __init__(self, limit: int, temp_dir: str | None) -> None:
        self.limit = limit
        self.temp_dir = temp_dir
        self.chunks: list[bytes] = []
        self.size = 0
        self.file: IO[bytes] | None = None

    @property
    def spilled(self) -> bool:
        return self.file is not None

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        out = self.file
        if out is not None:
            out.write(chunk)
            return
        self.chunks.append(chunk)
        if self.size > self.limit:
            self._spill()

    def _spill(self) -> None:
        out = tempfile.TemporaryFile(dir=self.temp_dir)  # noqa: SIM115 - kept open: the body
        try:
            out.writelines(self.chunks)
        except BaseException:
            out.close()
            raise
        self.file = out
        self.chunks = []

    def rewind(self) -> None:
        """Get ready to read the body from its start (once it is complete)."""
        out = self.file
        if out is not None:
            out.flush()
            out.seek(0)

    def read(self) -> bytes:
        """The next piece of the body; b"" at its end. In memory: all of it at once."""
        out = self.file
        if out is not None:
            return out.read(READ_SIZE)
        data = b"".join(self.chunks)
        self.chunks = []
        return data

    def close(self) -> None:
        out, self.file = self.file, None
        self.chunks = []
        if out is not None:
            out.close()

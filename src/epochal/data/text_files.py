"""Reading text files (CSV tables, label lists) with an explicit encoding and errors that name the line.

A CSV saved by Excel on Windows is usually cp1252, an old export latin-1; read as UTF-8 either
fails with a ``UnicodeDecodeError`` that names a byte offset in an internal buffer, not the file
or the line. :func:`encoding_error` turns that into a :class:`FileEncodingError` naming the file,
the line and the byte, and the option that sets the encoding.
"""

from __future__ import annotations

import codecs
import os

__all__ = ["FileEncodingError", "check_encoding", "encoding_error"]


class FileEncodingError(ValueError):
    """A text file that is not valid in the encoding it was read with.

    Attributes:
        path: the file.
        line: the 1-based line of the first byte that does not decode (None when unknown).
        encoding: the encoding it was read with.
    """

    def __init__(self, path: str, line: int | None, encoding: str, detail: str, option: str | None):
        self.path, self.line, self.encoding = path, line, encoding
        where = f" line {line}" if line is not None else ""
        fix = "save the file as UTF-8"
        if option is not None:
            fix += f", or give its encoding (e.g. 'cp1252' for Excel on Windows, 'latin-1') with {option}"
        super().__init__(f"{path}:{where} is not valid {encoding} ({detail}); {fix}")


def check_encoding(encoding: str) -> str:
    """``encoding`` if Python knows it, else a ValueError naming it."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(
            f"file encoding {encoding!r} is not known to Python; use e.g. 'utf-8', 'cp1252' or 'latin-1'"
        ) from None
    return encoding


def encoding_error(
    path: str | os.PathLike, encoding: str, error: UnicodeDecodeError, option: str | None = "file_encoding="
) -> FileEncodingError:
    """The :class:`FileEncodingError` for ``error``, met while reading ``path`` as ``encoding``.

    ``option`` names how a caller sets the encoding (None: it cannot, the file must be UTF-8).

    The file is read again line by line (only on this error path) to find the first line that
    does not decode. That finds it for every encoding whose newline is the byte ``\\n`` (UTF-8,
    the single-byte code pages); for others the line is left unknown.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as bad:
                byte = raw[bad.start : bad.start + 1]
                detail = f"byte 0x{byte.hex()} at column {bad.start + 1}: {bad.reason}"
                return FileEncodingError(str(path), number, encoding, detail, option)
    return FileEncodingError(str(path), None, encoding, f"{error.reason} at byte {error.start}", option)

"""Files sent to be read as a source: a dataset's data (``POST /v1/datasets/upload``, the
console's classification editor) or a file to profile (``POST
/v1/datasets/suggest/upload``).

Both routes take the same kinds of file, save it into a work folder of the platform's
own, build the URI its connector reads, and keep the server's paths out of an error
message: the caller sees the name it uploaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode

from policies.errors import InputError, SandboxError

UPLOAD_SUFFIXES = {".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json", ".xlsx", ".xls"}
WORKBOOK_SUFFIXES = (".xlsx", ".xls")
COPY_CHUNK = 1 << 20


class Upload(Protocol):
    """What is read of an uploaded file (a Starlette ``UploadFile``): its chunks."""

    async def read(self, size: int = -1) -> bytes: ...


def upload_suffix(filename: str | None, sheet: str | None, header: str | None) -> str:
    """The uploaded file's suffix (which tells its kind), checked with the workbook fields."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise InputError(
            f"the uploaded file's name must end in one of {', '.join(sorted(UPLOAD_SUFFIXES))}, "
            "which tells its kind"
        )
    if (sheet is not None or header is not None) and suffix not in WORKBOOK_SUFFIXES:
        raise InputError("'sheet' and 'header' apply to workbook uploads (.xlsx, .xls) only")
    return suffix


def workbook_uri(target: Path, **options: str | None) -> str:
    """``excel://target?sheet=...`` with the options given (the empty ones left out)."""
    return f"excel://{target}?" + urlencode({k: v for k, v in options.items() if v})


async def save_upload(upload: Upload, target: Path) -> None:
    """Copy the upload to ``target``, a chunk at a time."""
    with open(target, "wb") as out:
        while chunk := await upload.read(COPY_CHUNK):
            out.write(chunk)


def scrub(exc: SandboxError, paths: dict[str, str]) -> None:
    """Replace the server's own paths in ``exc``'s message by what the caller knows.

    A connector names the file it read, which for an upload is a file in the
    platform's work folder: the caller sees the name it uploaded instead.
    """
    message = exc.message
    for path, shown in sorted(paths.items(), key=lambda item: -len(item[0])):
        message = message.replace(path, shown)
    if message != exc.message:
        exc.message = message
        exc.args = (message,)


def upload_name(filename: str | None, suffix: str) -> str:
    """The uploaded file as its sender named it (base name, printable, at most 100 chars)."""
    name = "".join(c for c in Path(filename or "").name if c.isprintable())[:100]
    return f"the uploaded file '{name or 'upload' + suffix}'"

"""The providers' source calls of the HTTP client: a suggested classification for a
server-side source or a file sent along. Mixed into :class:`sandbox.client.Client`,
whose ``_json`` sends each request."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class SourceCalls:
    """``suggest`` (``POST /v1/datasets/suggest`` and ``.../suggest/upload``)."""

    def _json(self, method: str, path: str, **kwargs) -> Any:  # pragma: no cover - Client's
        raise NotImplementedError

    def suggest(self, uri: str, *, rows: int | None = None) -> dict:
        """A proposed classification for a server-side source: classification, evidence,
        notes, yaml (the file to edit), source, rows, complete. Nothing is registered."""
        return self._json("POST", "/v1/datasets/suggest", json={"uri": uri, "rows": rows})

    def suggest_upload(
        self,
        file: Path | str,
        *,
        rows: int | None = None,
        sheet: str | None = None,
        header: str | None = None,
    ) -> dict:
        """The same for a file on this machine, sent along and not kept by the platform."""
        file = Path(file)
        given = {"rows": rows, "sheet": sheet, "header": header}
        data = {key: str(value) for key, value in given.items() if value is not None}
        with open(file, "rb") as fh:
            files = {"file": (file.name, fh, "application/octet-stream")}
            return self._json("POST", "/v1/datasets/suggest/upload", data=data, files=files)

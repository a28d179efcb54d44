"""The providers' source calls of the HTTP client: a suggested classification for a
server-side source or a file sent along. Mixed into :class:`sandbox.client.Client`,
whose ``_json`` sends each request."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class SourceCalls:
    """``suggest`` a classification; ``refresh``, ``schedule_refresh`` and ``list_sources``."""

    def _json(self, method: str, path: str, **kwargs) -> Any:  # pragma: no cover - Client's
        raise NotImplementedError

    def suggest(self, uri: str, *, rows: int | None = None) -> dict:
        """A proposed classification for a server-side source: classification, evidence,
        notes, yaml (the file to edit), source, rows, complete. Nothing is registered.

        Example: ``api.suggest("postgresql://db.example/registry?table=firms", rows=1000)["yaml"]``
        """
        return self._json("POST", "/v1/datasets/suggest", json={"uri": uri, "rows": rows})

    def suggest_upload(
        self,
        file: Path | str,
        *,
        rows: int | None = None,
        sheet: str | None = None,
        header: str | None = None,
    ) -> dict:
        """The same for a file on this machine, sent along and not kept by the platform.

        Example: ``api.suggest_upload("firms.xlsx", sheet="2026", header="2")["yaml"]``
        """
        file = Path(file)
        given = {"rows": rows, "sheet": sheet, "header": header}
        data = {key: str(value) for key, value in given.items() if value is not None}
        with open(file, "rb") as fh:
            files = {"file": (file.name, fh, "application/octet-stream")}
            return self._json("POST", "/v1/datasets/suggest/upload", data=data, files=files)

    def refresh(self, name: str) -> dict:
        """Pull a dataset from its source again: dataset, version, changed, rows, sha256.

        Example: ``api.refresh("firms")["changed"]``
        """
        return self._json("POST", f"/v1/datasets/{name}/refresh")

    def schedule_refresh(self, name: str, daily_at: str | None) -> dict:
        """Pull a dataset every day at ``daily_at`` (HH:MM, Asia/Shanghai); None: no schedule.

        Example: ``api.schedule_refresh("firms", "02:30")``
        """
        return self._json("PUT", f"/v1/datasets/{name}/schedule", json={"daily_at": daily_at})

    def list_sources(self) -> list[dict]:
        """The provider's datasets with a source to pull again, their schedules, last pulls.

        Example: ``[s["dataset"] for s in api.list_sources()]``
        """
        return self._json("GET", "/v1/sources")

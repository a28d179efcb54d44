"""The providers' source calls of the HTTP client: a suggested classification for a
server-side source or a file sent along. Mixed into :class:`sandbox.client.Client`,
whose ``_json`` sends each request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sandbox.api.models import KeptSource, Pull, Schedule, Suggestion


class SourceCalls:
    """``suggest`` a classification; ``refresh``, ``schedule_refresh`` and ``list_sources``."""

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - Client's
        raise NotImplementedError

    def suggest(self, uri: str, *, rows: int | None = None) -> Suggestion:
        """A proposed classification for a server-side source: classification, evidence,
        notes, yaml (the file to edit), source, rows, complete. Nothing is registered.

        Example: ``api.suggest("postgresql://db.example/registry?table=firms", rows=1000).yaml``
        """
        body = {"uri": uri, "rows": rows}
        return Suggestion.model_validate(self._json("POST", "/v1/datasets/suggest", json=body))

    def suggest_upload(
        self,
        file: Path | str,
        *,
        rows: int | None = None,
        sheet: str | None = None,
        header: str | None = None,
    ) -> Suggestion:
        """The same for a file on this machine, sent along and not kept by the platform.

        Example: ``api.suggest_upload("firms.xlsx", sheet="2026", header="2").yaml``
        """
        file = Path(file)
        given = {"rows": rows, "sheet": sheet, "header": header}
        data = {key: str(value) for key, value in given.items() if value is not None}
        with open(file, "rb") as fh:
            files = {"file": (file.name, fh, "application/octet-stream")}
            answer = self._json("POST", "/v1/datasets/suggest/upload", data=data, files=files)
        return Suggestion.model_validate(answer)

    def refresh(self, name: str) -> Pull:
        """Pull a dataset from its source again: dataset, version, changed, rows, sha256.

        Example: ``api.refresh("firms").changed``
        """
        return Pull.model_validate(self._json("POST", f"/v1/datasets/{name}/refresh"))

    def schedule_refresh(self, name: str, daily_at: str | None) -> Schedule:
        """Pull a dataset every day at ``daily_at`` (HH:MM, Asia/Shanghai); None: no schedule.

        Example: ``api.schedule_refresh("firms", "02:30")``
        """
        body = {"daily_at": daily_at}
        return Schedule.model_validate(
            self._json("PUT", f"/v1/datasets/{name}/schedule", json=body)
        )

    def list_sources(self) -> list[KeptSource]:
        """The provider's datasets with a source to pull again, their schedules, last pulls.

        Example: ``[s.dataset for s in api.list_sources()]``
        """
        return [KeptSource.model_validate(s) for s in self._json("GET", "/v1/sources")]

"""Providers' sources as Arrow record batches, and the quality profile of a snapshot.

``open_source(uri)`` picks the connector by the URI's scheme (``connectors.registry``);
every connector implements :class:`~connectors.base.Source`. ``connectors`` imports
``policies`` only.
"""

from .base import Progress, Source, redact_uri
from .registry import open_source

__all__ = ["Progress", "Source", "open_source", "redact_uri"]

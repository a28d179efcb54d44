"""The HTTP API: the platform as one service (Art. 6, the single channel).

Modules: :mod:`.app` (the application factory), :mod:`.errors` (the one JSON
error envelope), :mod:`.codes` (error code -> HTTP status and exception class,
shared with :mod:`sandbox.client`), :mod:`.auth` (bearer tokens), :mod:`.limits`
(body, upload and rate limits), :mod:`.executor` (the job loop of each server
process) and the route modules ``routes_*``.

This ``__init__`` imports nothing, so that the client can use :mod:`.codes`
without loading FastAPI.
"""

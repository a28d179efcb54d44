"""The HTTP API: the platform as one service (Art. 6, the single channel).

Modules: :mod:`.app` (the application factory), :mod:`.errors` (the one JSON
error envelope; codes and statuses come from :mod:`sandbox.core.codes`, shared
with :mod:`sandbox.client`), :mod:`.auth` (bearer tokens), :mod:`.limits` (body,
upload and rate limits), :mod:`.executor` (the job loop of each server process)
and the route modules ``routes_*``.
"""

"""HE aggregate jobs over HTTP: ``POST /v1/he/sum``.

The body is the binary request of :func:`sandbox.client.he.build_request`
(``application/octet-stream``): header, public context, keys, ciphertexts. It
is read as a stream and cut off at ``he.max_request_mb`` (the door's cap for
this path is ``api.max_upload_mb``, :mod:`.limits`). The answer is binary too:
a header (the released groups and their subjects, nothing else) and one
ciphertext that only the operator can decrypt. The gate is the platform's
(``may_run`` with job kind ``he_aggregate``, inside :func:`sandbox.he.service.he_sum`),
so refusals carry the same rule and article as in-process.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response

from policies.errors import PayloadTooLarge
from sandbox.api.auth import CurrentPrincipal
from sandbox.core.principals import Role, require_role
from sandbox.he.service import he_sum_safely

router = APIRouter(prefix="/v1", tags=["he"])
MEDIA = "application/octet-stream"
MIB = 1024 * 1024


@router.post(
    "/he/sum",
    response_class=Response,
    responses={200: {"content": {MEDIA: {}}, "description": "the encrypted group sums"}},
)
async def he_sum_route(request: Request, me: CurrentPrincipal) -> Response:
    """Encrypted sums per group of a dataset's public columns (operators). Binary in, binary out."""
    require_role(me, Role.OPERATOR, action="run HE aggregate jobs", article="Art. 14")
    platform = request.app.state.platform
    cap_mb = platform.settings.he.max_request_mb
    cap = int(cap_mb * MIB)
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > cap:
            raise PayloadTooLarge(
                f"the HE request is over its limit of {cap_mb:g} MiB (setting he.max_request_mb)"
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    answer = await anyio.to_thread.run_sync(he_sum_safely, platform, me, body)
    return Response(content=answer.to_bytes(), media_type=MEDIA)

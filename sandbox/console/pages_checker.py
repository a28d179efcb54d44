"""The output checker's pages: what waits for its vote, and the held output it votes on.

Each page calls the functions the API's routes call: :func:`sandbox.workflow.held.held_outputs`
and :func:`~sandbox.workflow.held.held_output` (appointed checkers, auditors, a covering
authority; never the author or its organisation) and :func:`sandbox.workflow.airlock.vote`
(appointed, not of the author's organisation, once; the other checker's vote stays sealed
until both are in). Opening a review page opens the review (:func:`airlock.open_review`)
for a checker appointed to it, as ``output review`` does on the host.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import Response

from policies.workflow import Vote
from sandbox.console.web import (
    CurrentSession,
    FormSession,
    Id,
    console_router,
    redirect,
    render,
)
from sandbox.workflow import airlock, held

router = console_router()

NOTE_MAX = 2000


@router.get("/reviews")
def reviews(request: Request, session: CurrentSession) -> Response:
    items = held.held_outputs(request.app.state.platform, session.principal)
    return render(request, "reviews.html", {"items": items})


def _flagged(rows: list[list[dict]]) -> list[dict]:
    """Every cell that did not simply pass, with its row number, for the list under the table."""
    return [
        {"row": r, **cell}
        for r, row in enumerate(rows)
        for cell in row
        if cell["verdict"] != "pass" or cell["rules"]
    ]


@router.get("/reviews/{job_id}")
def review(request: Request, session: CurrentSession, job_id: Id) -> Response:
    platform, me = request.app.state.platform, session.principal
    output = held.held_output(platform, me, job_id)
    review = output["review"]  # airlock.show: before the verdict, only my own vote
    with platform.store.read() as conn:
        appointed = me.id in airlock.checkers_of(conn, job_id)
    voted = any(v["checker"] == me.name for v in review["votes"])
    may_vote = appointed and not voted and review.get("status") in (None, "pending")
    if may_vote and review.get("status") is None:
        output["review"] = airlock.open_review(platform, me, job_id)
    return render(
        request,
        "review.html",
        {
            "out": output,
            "flagged": _flagged(output["rows"]),
            "may_vote": may_vote,
            "votes": [v.value for v in Vote],
        },
    )


@router.post("/reviews/{job_id}/vote")
def vote(
    request: Request,
    session: FormSession,
    job_id: Id,
    decision: Annotated[Vote, Form()],
    note: Annotated[str, Form(max_length=NOTE_MAX)] = "",
) -> Response:
    """Cast the vote; once both are in, the verdict and both votes are shown."""
    result = airlock.vote(request.app.state.platform, session.principal, job_id, decision, note)
    if result.get("status") in (None, "pending"):
        return redirect(f"/reviews/{job_id}")
    return redirect(f"/reviews/{job_id}/verdict")


@router.get("/reviews/{job_id}/verdict")
def verdict(request: Request, session: CurrentSession, job_id: Id) -> Response:
    """The review's state as :func:`airlock.show` tells it (votes unsealed once decided)."""
    result = airlock.show(request.app.state.platform, session.principal, job_id)
    return render(request, "decided.html", {"result": result})

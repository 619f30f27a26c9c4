"""What a reviewer needs to decide on a case's draft (`dsr drafts show`), in one read.

The full pending draft(s) (subject and body), the policy sections each quotes, marked when
`dsr policies check` flags one (a draft should never quote such a section: if one does, the
reviewer is told), the lines for staff (`[[ … ]]`) that keep it from being approved, the
erasure checklist with each system's state, law and end date, and the earlier versions: the
generated text of an edited draft, and the drafts a redraft superseded.
"""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session

from . import cases, workflow
from .config import Settings
from .understand.policy_check import flagged_sections

# A line for staff, as drafting writes it; a draft holding one is not ready to send.
STAFF_LINE = re.compile(r"\[\[.*?\]\]", re.DOTALL)


def staff_lines(body: str) -> list[str]:
    return [" ".join(m.group(0).split()) for m in STAFF_LINE.finditer(body)]


def desk_view(session: Session, settings: Settings, ref: str) -> dict[str, Any]:
    """The case's pending drafts in full (or, when none waits, its newest draft), their quoted
    sections with flags, staff lines and versions, the erasure checklist, and earlier drafts."""
    case = cases.get_case(session, ref)
    details = cases.case_details(session, case)
    org = settings.organization(case.org)
    policy = workflow.policy_for(settings, org)
    record = workflow.record_for(settings, org) if policy is not None else None
    flagged = flagged_sections(policy, record) if policy is not None else {}
    headings = {s.id: s.heading for s in policy.sections} if policy is not None else {}
    drafts = details["drafts"]
    pending = [d for d in drafts if d["state"] == "pending"]
    shown = pending or drafts[-1:]
    views = []
    for d in shown:
        lines = staff_lines(d["body"])
        views.append(d | {
            "sections": [{"id": sid, "heading": headings.get(sid, sid),
                          "flagged": sid in flagged,
                          "findings": [f"{f.what} ({f.why})" for f in flagged.get(sid, [])]}
                         for sid in d["quoted_sections"]],
            "staff_lines": lines,
            "ready": not lines,
        })
    shown_ids = {d["id"] for d in shown}
    earlier = [{"id": d["id"], "kind": d["kind"], "language": d["language"], "state": d["state"],
                "created_at": d["created_at"], "decided_by": d["decided_by"],
                "edited": d["edited"], "reason": d["reason"]}
               for d in drafts if d["id"] not in shown_ids]
    return {
        "case": cases.case_summary(case),
        "pending": bool(pending),
        "drafts": views,
        "erasure_tasks": details["erasure_tasks"],
        "earlier": earlier,
    }

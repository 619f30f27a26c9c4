"""What a reviewer needs to decide on a case's draft (`dsr drafts show`), in one read.

The full pending draft(s) (subject and body), the policy sections each quotes, marked when
`dsr policies check` flags one (a draft should never quote such a section: if one does, the
reviewer is told), the lines for staff (`[[ … ]]`) that keep it from being approved, the
erasure checklist with each system's state, law and end date, and the earlier versions: the
generated text of an edited draft, and the drafts a redraft superseded.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
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
    found, triage = workflow.reading(session, case)
    return {
        "case": cases.case_summary(case),
        "case_id": case.id,
        "pending": bool(pending),
        "drafts": views,
        "erasure_tasks": details["erasure_tasks"],
        "checklists": details["checklists"],
        "evidence": found,
        "triage": triage,  # why a case with no intent went to a person
        "events": details["events"],
        "working_days_left": working_days_left(settings, case.due, case.state),
        "earlier": earlier,
    }


def working_days_left(settings: Settings, due: date | None, state: str,
                      today: date | None = None) -> int | None:
    """Working days from today up to and including the due date (negative when overdue)."""
    if due is None or state in cases.FINISHED_STATES:
        return None
    calendar = cases._calendar(settings)
    today = today or datetime.now(cases.OSLO).date()
    if due < today:
        return -sum(1 for n in range((today - due).days)
                    if calendar.is_working_day(due + timedelta(days=n + 1)))
    return sum(1 for n in range((due - today).days)
               if calendar.is_working_day(today + timedelta(days=n + 1)))


def open_case_refs(session: Session) -> list[str]:
    """References of the cases still open (not answered, closed or rejected), most urgent first."""
    found = [c for c in cases.list_cases(session) if c.state not in cases.FINISHED_STATES]
    return [c.ref for c in sorted(found, key=lambda c: (c.due or date.max, c.id))]

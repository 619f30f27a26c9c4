"""The privileges of the role the service uses on PostgreSQL (README, "Running without
superuser rights"): it reads and writes cases, drafts and the rest, but may only add to the
audit trail. Without UPDATE, DELETE and TRUNCATE on `events`, without owning the table (so no
ALTER TABLE ... DISABLE TRIGGER) and without superuser (so no session_replication_role), the
service cannot rewrite the trail even if it is compromised.

The schema itself belongs to another role, which runs the migrations.
"""

from __future__ import annotations

import re

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def service_role_grants(role: str, schema: str = "public") -> list[str]:
    """SQL that gives `role` what the service needs on an existing, migrated schema; safe to
    run again after every upgrade (it also covers tables a new migration added)."""
    if not _ROLE_NAME.match(role) or not _ROLE_NAME.match(schema):
        raise ValueError(f"not a plain PostgreSQL name: {role!r} / {schema!r}")
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {schema}.events FROM {role}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {schema}.alembic_version FROM {role}",
    ]

"""The organisation tree: creating, editing and disabling organisations."""
from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import func, select

from app.core import audit
from app.extensions import db
from app.orgs.models import CHILD_KINDS, Organisation

AUDITED_FIELDS = ("code", "name", "kind", "parent_id", "contact_name", "contact_phone", "status")


class OrganisationError(ValueError):
    """A change the rules refuse; the message is for the person, `field` names the form field at fault."""

    def __init__(self, message: str, field: str = "code"):
        super().__init__(message)
        self.field = field


def path_segment(org_id: int) -> str:
    # Zero-padded so that ordering by path is tree order.
    return f"{org_id:08d}/"


def code_taken(code: str, exclude_id: int | None = None) -> bool:
    stmt = select(Organisation.id).where(func.lower(Organisation.code) == code.strip().lower())
    if exclude_id:
        stmt = stmt.where(Organisation.id != exclude_id)
    return db.session.execute(stmt).first() is not None


def create_platform(code: str, name: str) -> Organisation:
    """The root of the tree (created once, by the demo seed or an installation step)."""
    org = Organisation(kind="platform", code=code, name=name, path="/")
    db.session.add(org)
    db.session.flush()
    org.path = "/" + path_segment(org.id)
    audit.record("org.create", "organisation", org.id, after=audit.snapshot(org, AUDITED_FIELDS), org_id=org.id)
    return org


def create_organisation(parent: Organisation, kind: str, code: str, name: str,
                        contact_name: str | None = None, contact_phone: str | None = None) -> Organisation:
    if kind not in CHILD_KINDS[parent.kind]:
        raise OrganisationError(_("This kind of organisation cannot be created under the chosen parent."), "kind")
    if code_taken(code):
        raise OrganisationError(_("This code is taken."))
    org = Organisation(parent_id=parent.id, parent=parent, kind=kind, code=code.strip(), name=name.strip(),
                       contact_name=contact_name or None, contact_phone=contact_phone or None, path=parent.path)
    db.session.add(org)
    db.session.flush()
    org.path = parent.path + path_segment(org.id)
    audit.record("org.create", "organisation", org.id, after=audit.snapshot(org, AUDITED_FIELDS), org_id=org.id)
    db.session.commit()
    return org


def update_organisation(org: Organisation, code: str, name: str, contact_name: str | None,
                        contact_phone: str | None) -> Organisation:
    if code_taken(code, org.id):
        raise OrganisationError(_("This code is taken."))
    before = audit.snapshot(org, AUDITED_FIELDS)
    org.code, org.name = code.strip(), name.strip()
    org.contact_name, org.contact_phone = contact_name or None, contact_phone or None
    old, new = audit.changed(before, audit.snapshot(org, AUDITED_FIELDS))
    if new:
        audit.record("org.update", "organisation", org.id, before=old, after=new, org_id=org.id)
    db.session.commit()
    return org


def set_organisation_status(actor_org_id: int, org: Organisation, status: str) -> Organisation:
    """Disable or enable an organisation; operators of a disabled one (and below it) cannot log in."""
    if org.id == actor_org_id:
        raise OrganisationError(_("You cannot disable your own organisation."), "status")
    if org.kind == "platform":
        raise OrganisationError(_("The platform cannot be disabled."), "status")
    if audit.change_status(org, "organisation", status, f"org.{'disable' if status == 'disabled' else 'enable'}",
                           org.id):
        db.session.commit()
    return org


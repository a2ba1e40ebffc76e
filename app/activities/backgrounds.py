"""The H5 background image of a theme activity: the checks on an upload, where it is kept, and
how it is found again.

An image is stored as soon as it is chosen, under a random 128-bit name in `pending/` of the
upload folder, so that a form that fails on another field keeps it (a browser cannot keep a
chosen file). Saving the theme activity moves it to `theme_backgrounds/`; pending files nobody
saved are removed by `purge_stale_pending` (the daily job). The random name is the only handle a
pending file has, so one operator cannot adopt another's upload by guessing.

Decisions: jpg, png and gif only, recognised by their content (magic bytes), never by the file
name or the browser's content type; at most 5 MB (§3.1's figure; §7 also mentions 2 MB, and a
375 × 812 background of good quality is often between 2 and 5 MB). Pillow is not a dependency,
and the three signatures are fixed and short, so they are checked here by hand.
"""
from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path
from typing import BinaryIO

from flask import current_app
from flask_babel import gettext as _

MAX_BYTES = 5 * 1024 * 1024
PENDING, STORED = "pending", "theme_backgrounds"
SIGNATURES = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"))
MIMETYPES = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif"}
_REF = re.compile(rf"({PENDING}|{STORED})/[0-9a-f]{{32}}\.(jpg|png|gif)")


class InvalidImage(ValueError):
    """The upload is not an image we accept; the message says why, for the person."""


def upload_folder() -> Path:
    """`UPLOAD_FOLDER` when configured, else `uploads/` in the instance folder."""
    configured = current_app.config.get("UPLOAD_FOLDER")
    return Path(configured) if configured else Path(current_app.instance_path) / "uploads"


def image_kind(head: bytes) -> str | None:
    """'jpg', 'png' or 'gif' from the first bytes of a file; None for anything else."""
    for signature, kind in SIGNATURES:
        if head.startswith(signature):
            return kind
    return None


def is_ref(ref: str | None, *, pending: bool | None = None) -> bool:
    """A well-formed reference to a stored image (only pending ones, or only saved ones, when asked)."""
    match = _REF.fullmatch(ref or "")
    if not match:
        return False
    return pending is None or (match.group(1) == PENDING) == pending


def path_of(ref: str) -> Path:
    if not is_ref(ref):
        raise ValueError(f"not an image reference: {ref!r}")
    return upload_folder() / ref


def exists(ref: str | None) -> bool:
    return is_ref(ref) and path_of(ref).is_file()


def mimetype_of(ref: str) -> str:
    return MIMETYPES[ref.rsplit(".", 1)[1]]


def _write(ref: str, data: bytes) -> None:
    target = path_of(ref)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, target)


def store_pending(stream: BinaryIO) -> str:
    """Check an uploaded file and keep it as a pending image; its reference, or InvalidImage."""
    data = stream.read(MAX_BYTES + 1)
    if not data:
        raise InvalidImage(_("Choose an image file."))
    if len(data) > MAX_BYTES:
        raise InvalidImage(_("The image may be at most 5 MB."))
    kind = image_kind(data[:16])
    if kind is None:
        raise InvalidImage(_("Only JPG, PNG and GIF images can be used (the file's content is none of them)."))
    ref = f"{PENDING}/{secrets.token_hex(16)}.{kind}"
    _write(ref, data)
    return ref


def adopt(ref: str) -> str:
    """Move a pending image to the saved ones (a saved one stays where it is); its new reference."""
    if is_ref(ref, pending=False):
        return ref
    saved = f"{STORED}/{ref.split('/', 1)[1]}"
    target = path_of(saved)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path_of(ref), target)
    return saved


def discard(ref: str | None) -> None:
    """Remove a stored image if it is there (best effort: a missing file is not an error)."""
    if is_ref(ref):
        path_of(ref).unlink(missing_ok=True)


def purge_stale_pending(older_than_seconds: int = 86_400) -> int:
    """Remove pending images older than a day (chosen in a form that was never saved); how many."""
    folder = upload_folder() / PENDING
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than_seconds
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed

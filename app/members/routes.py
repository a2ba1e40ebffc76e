"""Member and product screens."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("members", __name__)

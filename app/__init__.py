"""Marketing Hub (营销枢纽): the app factory."""
from __future__ import annotations

from flask import Flask

from app.config import INSTANCE, Config


def create_app(config_class: type = Config, **overrides) -> Flask:
    """Build the app: configuration, extensions, blueprints, error pages, CLI, Jinja, security."""
    app = Flask(__name__, template_folder="../templates", static_folder="../static", instance_path=str(INSTANCE))
    app.config.from_object(config_class)
    app.config.update(overrides)
    INSTANCE.mkdir(exist_ok=True)

    from app import web

    web.register_extensions(app)
    web.register_models()
    web.register_blueprints(app)
    web.register_errors(app)
    web.register_security(app)
    web.register_jinja(app)
    web.register_cli(app)
    web.register_embedded_workers(app)
    web.register_proxy_fix(app)
    return app

"""The background jobs page: start a tracked job, watch its self-polling row, stop polling when done."""
from __future__ import annotations

import pytest
from rq.worker import SimpleWorker
from sqlalchemy import select

import jobs
from app.core.audit import AuditEvent
from app.core.jobruns import JobRun
from app.extensions import db
from tests.helpers import csrf_from, htmx_headers
from tests.system.conftest import in_english


def run_worker(app) -> None:
    SimpleWorker([jobs.queue(name) for name in jobs.QUEUES], connection=app.extensions["redis"]).work(
        burst=True, logging_level="WARNING")


def start(client, name: str):
    return client.post(f"/jobs/start/{name}", data={"csrf_token": csrf_from(client.get("/jobs"))})


def only_run() -> JobRun:
    db.session.expire_all()
    return db.session.execute(select(JobRun)).scalar_one()


def poll(client, run_id: int):
    return client.get(f"/jobs/{run_id}", headers=htmx_headers(f"job-run-{run_id}"))


def test_started_job_shows_live_progress_then_stops_polling(app, client, auth, world):
    auth.login("boss")
    in_english(client)
    response = start(client, "relay_outbox")
    assert response.status_code == 302 and response.headers["Location"] == "/jobs"

    run = only_run()
    assert (run.name, run.status, run.queue) == ("jobs.outbox.relay_outbox", "queued", "outbox")
    assert (run.started_by, run.org_id) == (world.boss.id, world.platform.id)
    assert run.label == "Deliver due outbox messages now"  # in the starter's language
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "job.start")).scalar_one()
    assert event.object_id == str(run.id) and event.actor_name == "boss"

    # A reload of the page shows the run, polling itself every second.
    page = client.get("/jobs").get_data(as_text=True)
    assert "Started: Deliver due outbox messages now." in page  # the toast
    row = page.split(f'<tr id="job-run-{run.id}"')[1].split("</tr>")[0]
    assert 'hx-trigger="every 1s"' in row and f'hx-get="/jobs/{run.id}"' in row and 'data-status="queued"' in row
    waiting = poll(client, run.id)
    assert waiting.status_code == 200 and 'hx-trigger="every 1s"' in waiting.get_data(as_text=True)
    assert "<html" not in waiting.get_data(as_text=True)

    run_worker(app)

    finished = poll(client, run.id)
    html = finished.get_data(as_text=True)
    assert finished.status_code == 286  # htmx stops polling
    assert "hx-trigger" not in html and 'data-status="succeeded"' in html and "100%" in html
    assert f'id="job-run-{run.id}"' in html and "boss" in html
    assert client.get("/jobs").get_data(as_text=True).count('hx-trigger="every 1s"') == 0


def test_verify_chain_job_from_the_page(app, client, auth, world):
    auth.login("boss")
    assert start(client, "verify_audit_chain").status_code == 302
    run = only_run()
    assert run.name == "jobs.maintenance.verify_audit_chain"
    run_worker(app)
    done = only_run()
    assert (done.status, done.progress) == ("succeeded", 100)
    assert done.result["checked"] >= 2  # at least the login and the job.start events
    assert done.message.startswith("audit chain OK")


def test_row_url_loaded_directly_goes_to_the_list(client, auth, world):
    auth.login("boss")
    start(client, "relay_outbox")
    run = only_run()
    response = client.get(f"/jobs/{run.id}")
    assert response.status_code == 302 and response.headers["Location"] == "/jobs"
    assert client.get("/jobs/999999", headers=htmx_headers("job-run-999999")).status_code == 404


def test_rows_fragment_for_its_target(client, auth, world):
    auth.login("boss")
    start(client, "relay_outbox")
    fragment = client.get("/jobs", headers=htmx_headers("job-rows")).get_data(as_text=True)
    assert "<html" not in fragment and 'id="job-run-' in fragment
    assert 'data-testid="job-starters"' not in fragment


@pytest.mark.parametrize("name", ["relay_outbox", "verify_audit_chain"])
def test_operators_below_the_platform_may_watch_but_not_start(client, auth, make, world, name):
    make.operator(world.bank_a, roles=("operator",), username="a_operator")
    auth.login("a_operator")
    page = client.get("/jobs")
    assert page.status_code == 200 and 'data-testid="job-starters"' not in page.get_data(as_text=True)
    assert client.post(f"/jobs/start/{name}", data={"csrf_token": csrf_from(page)}).status_code == 403
    assert db.session.execute(select(JobRun)).first() is None


def test_platform_operator_without_platform_manage_may_not_start(client, auth, make, world):
    make.operator(world.platform, roles=("operator",), username="p_operator")
    auth.login("p_operator")
    page = client.get("/jobs")
    assert 'data-testid="job-starters"' not in page.get_data(as_text=True)
    assert client.post("/jobs/start/relay_outbox", data={"csrf_token": csrf_from(page)}).status_code == 403


def test_unknown_job_name_is_404(client, auth, world):
    auth.login("boss")
    assert start(client, "drop_everything").status_code == 404


def test_bank_operator_sees_only_their_banks_runs(client, auth, make, world):
    runs = {}
    for key, org in (("a", world.bank_a), ("b", world.bank_b), ("platform", world.platform)):
        run = JobRun(name="jobs.reports.export", label=f"export {key}", queue="reports", org_id=org.id)
        db.session.add(run)
        db.session.commit()
        runs[key] = run.id
    make.operator(world.bank_a, roles=("operator",), username="a_operator")
    auth.login("a_operator")
    html = client.get("/jobs").get_data(as_text=True)
    assert f'id="job-run-{runs["a"]}"' in html
    assert f'id="job-run-{runs["b"]}"' not in html and f'id="job-run-{runs["platform"]}"' not in html
    assert poll(client, runs["b"]).status_code == 404
    assert poll(client, runs["a"]).status_code == 200


def test_running_row_shows_its_progress_and_keeps_polling(client, auth, world):
    run = JobRun(name="jobs.maintenance.verify_audit_chain", label="verify", queue="default", org_id=world.platform.id,
                 status="running", progress=40, message="2000 of 5000 events verified")
    db.session.add(run)
    db.session.commit()
    auth.login("boss")
    response = poll(client, run.id)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'hx-trigger="every 1s"' in html and 'data-status="running"' in html
    assert 'style="width: 40%"' in html and "2000 of 5000 events verified" in html
    assert "progress-bar-animated" in html


def test_start_with_redis_down_says_so_and_marks_the_run_failed(app, world):
    from tests.conftest import Auth
    from tests.core.conftest import another_app

    broken = another_app(app, REDIS_URL="redis://127.0.0.1:1/0")
    client = broken.test_client()
    Auth(client).login("boss")
    in_english(client)
    response = client.post("/jobs/start/relay_outbox", data={"csrf_token": csrf_from(client.get("/jobs"))},
                           follow_redirects=True)
    assert "The job could not be queued. See its row for the reason." in response.get_data(as_text=True)
    run = only_run()
    assert run.status == "failed" and run.error.startswith("could not enqueue: ConnectionError")
    assert 'data-status="failed"' in response.get_data(as_text=True)

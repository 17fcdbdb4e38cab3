"""The operator web console in headless Chromium against a whole mesh, through Envoy only: sign-in (and the
services refusing calls without a token), browsing and running the seed skill, pulling with a progress bar
and a tampered pull refused with its reason, live serving figures under load, halting one session, and the
kill switch pressed from the keyboard halting every replica, and its checkbox that also fails the batch a model is
running (cancel_running) where, unticked, that batch is answered in full. Screenshots go to
test-artifacts/console/."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import grpc
import pytest
from playwright.sync_api import Page, Request, expect

from mlmesh.v1 import serving_pb2
from services.mesh.demo import data
from tests.console.conftest import HF_REPO, TAMPERED_REPO, ConsoleMesh, screenshot, signed_in
from tests.console.mesh_setup import (SEED_SKILL, HeldBatch, Load, deploy_on_each_replica, publish_seed_skill,
                                      register_slow_model)
from tests.e2e.front import market_rows

SESSION = "console-alpha"


def get(mesh: ConsoleMesh, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://{mesh.envoy}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_services_refuse_calls_without_a_valid_token_whatever_the_page_shows(mesh):
    for path in ("/ml/skills", "/ml/serving/sessions", "/ml/serving/sessions:watch", "/ml/operations"):
        status, _, body = get(mesh, path)
        assert status == 401 and json.loads(body)["code"] == 16, (path, body)   # UNAUTHENTICATED, from the service
    forged = mesh.console_token().rsplit(".", 1)[0] + ".AAAA"
    status, _, _ = get(mesh, "/ml/skills", {"authorization": f"Bearer {forged}"})
    assert status == 401
    status, _, _ = get(mesh, "/ml/skills", {"authorization": f"Bearer {mesh.console_token()}"})
    assert status == 200


def test_the_console_is_served_through_envoy_with_strict_headers_for_every_page_path(mesh):
    for path in ("/console/", "/console/ml/skills", "/console/ml/serving", "/console/ml/pull"):
        status, headers, body = get(mesh, path)
        headers = {k.lower(): v for k, v in headers.items()}
        assert status == 200 and b'<div id="app">' in body, path
        assert headers["content-security-policy"].startswith("default-src 'self'")
        assert headers["cache-control"] == "no-store" and headers["x-content-type-options"] == "nosniff"
    status, _, body = get(mesh, "/console/config.json")
    assert status == 200 and json.loads(body)["servingReplicas"] == mesh.serving_replicas
    assert get(mesh, "/console/../ml/skills")[0] == 401       # normalised by Envoy: the API, not a file
    assert get(mesh, "/console/assets/nothing.js")[0] == 404


def test_sign_in_refuses_a_bad_token_by_name_and_keeps_a_good_one_in_the_tab(mesh, page: Page):
    page.goto(mesh.url + "ml/skills")
    token = page.get_by_label("Mesh token")
    token.fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".field-error")).to_contain_text("Token: not a mesh token")
    expect(token).to_have_attribute("aria-invalid", "true")
    token.fill(mesh.console_token(audience="compiler"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".field-error")).to_contain_text("lacks registry, serving, puller")
    screenshot(page, "sign-in")
    token.fill(mesh.console_token())
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Skills", exact=True)).to_be_visible()
    assert page.evaluate("Object.keys(sessionStorage)") == ["mlmesh.console.token"]
    assert page.evaluate("Object.keys(localStorage)") == []
    page.reload()                                             # the tab keeps it; nothing else does
    expect(page.get_by_role("heading", name="Skills", exact=True)).to_be_visible()


def test_browse_the_seed_skill_and_run_it_step_by_step(mesh, page: Page):
    ids, version = publish_seed_skill(mesh)
    signed_in(page, mesh, "ml/skills")
    skill = page.get_by_label("Skill", exact=True)
    expect(skill.locator("option")).to_have_count(1)
    skill.select_option(SEED_SKILL)
    expect(page.get_by_label("Version", exact=True)).to_have_value(version)
    expect(page.get_by_test_id("version-hash")).to_have_text(version)
    lock = page.locator('[data-table="lock"]')
    for name in ("regime_classifier", "alpha_bull", "alpha_bear", "alpha_sideways"):
        expect(lock.get_by_role("row", name=re.compile(f"{name}@prod"))).to_contain_text(ids[name])

    market, alpha = market_rows(2, seed=5)
    page.get_by_label("market_features (features)").fill("0.1, abc")
    page.get_by_role("button", name=re.compile(f"Run {SEED_SKILL}")).click()
    expect(page.get_by_text("market_features: expected a list of numbers")).to_be_visible()
    page.get_by_label("market_features (features)").fill(", ".join(map(str, market)))
    page.get_by_label("alpha_features (features)").fill(json.dumps(alpha))
    page.get_by_role("button", name=re.compile(f"Run {SEED_SKILL}")).click()
    expect(page.locator(".run-status")).to_contain_text("Run succeeded", timeout=90_000)
    steps = page.locator('[data-table="steps"] tbody tr')
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_contain_text("regime")
    regime = json.loads(page.locator('[data-output="regime"]').inner_text())
    assert regime in data.REGIMES
    expect(steps.nth(1)).to_contain_text(f"alpha_{regime}@prod")
    assert isinstance(json.loads(page.locator('[data-output="alpha"]').inner_text()), float)
    expect(page.locator('[data-table="runs"] tbody tr')).to_have_count(1)      # the ledger has the run
    expect(page.locator('[data-table="runs"]')).to_contain_text("succeeded")
    screenshot(page, "skills")


def test_pull_shows_progress_and_a_tampered_pull_is_refused_with_its_reason(mesh, page: Page):
    signed_in(page, mesh, "ml/pull")
    page.get_by_label("Repository").fill("not a repo")
    page.get_by_role("button", name="Pull").click()
    expect(page.get_by_text("Repository: expected ORG/NAME")).to_be_visible()

    page.get_by_label("Repository").fill(HF_REPO)
    page.get_by_label("Revision (optional)").fill("v1")
    page.get_by_label("Aliases (optional)").fill("prod")
    page.get_by_role("button", name="Pull").click()
    seen: set[tuple[float, float]] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not page.locator("[data-outcome]").count():
        seen.add(tuple(page.locator("#pull-progress").evaluate("p => [p.value, p.max]")))
        time.sleep(0.02)
    expect(page.locator('[data-outcome="succeeded"]')).to_contain_text(f"as {HF_REPO}")
    done, total = page.locator("#pull-progress").evaluate("p => [p.value, p.max]")
    assert done == total
    assert any(0 < d < t and t > 1024 * 1024 for d, t in seen), seen   # a byte count part way, on the bar
    screenshot(page, "pull")

    page.get_by_label("Repository").fill(TAMPERED_REPO)
    page.get_by_label("Revision (optional)").fill("")
    page.get_by_label("Aliases (optional)").fill("")
    page.get_by_role("button", name="Pull").click()
    refused = page.locator('[data-outcome="refused"]')
    expect(refused).to_contain_text("FAILED_PRECONDITION", timeout=60_000)
    expect(page.get_by_test_id("refusal-reason")).to_contain_text(re.compile("sha-?256|hash", re.I))
    screenshot(page, "pull-refused")

    # TorchHub: an entry that is not on the allow-list is refused, with the puller's reason, not a generic failure
    page.get_by_label("Hub").select_option("torchhub")
    page.get_by_label("Repository").fill("someone/unknown-repo")
    page.get_by_label("Entry").fill("model")
    page.get_by_role("button", name="Pull").click()
    expect(page.locator('[data-outcome="refused"]')).to_contain_text("torchhub://someone/unknown-repo/model")
    expect(page.get_by_test_id("refusal-reason")).to_contain_text(re.compile("allow", re.I))


def test_serving_figures_move_under_load_one_session_halts_and_the_kill_switch_halts_every_replica(
        mesh, page: Page):
    deploy_on_each_replica(mesh, SESSION, "alpha_bull@prod")
    first, second = mesh.serving_replicas
    signed_in(page, mesh, "ml/serving")
    rows = {r: page.locator(f'tr[data-session="{SESSION}"][data-replica="{r}"]') for r in mesh.serving_replicas}
    cell = lambda replica, column: rows[replica].locator(f'td[data-col="{column}"]')  # noqa: E731
    for replica in mesh.serving_replicas:
        expect(cell(replica, "state")).to_have_attribute("data-state", "ready")
    requests_cell = cell(first, "requests")
    before = requests_cell.inner_text()
    with Load(mesh, first, SESSION) as load:
        expect(requests_cell).not_to_have_text(before, timeout=15_000)      # WatchSessions pushed new figures
        expect(cell(first, "throughput")).not_to_have_text("0.0", timeout=15_000)   # throughput
        time.sleep(1.5)
        expect(cell(first, "batches")).to_contain_text("×")      # batch sizes seen
        screenshot(page, "serving")

        page.get_by_role("button", name=f"Halt session {SESSION} on {first}").click()
        expect(cell(first, "state")).to_have_attribute("data-state", "halted", timeout=15_000)
        expect(cell(first, "state")).to_have_text("halted: halted from the console")
        expect(cell(second, "state")).to_have_attribute("data-state", "ready")
    assert load.answered > 0 and load.refused > 0    # answered before the halt, refused after it

    # The kill switch from the keyboard only: Tab to it, Enter.
    page.locator("body").focus()
    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('kill')"):
            break
    else:
        pytest.fail("the kill switch is not reachable with Tab")
    page.keyboard.press("Enter")
    answers = page.locator("#kill-results li")
    expect(answers).to_have_count(2)
    for replica in mesh.serving_replicas:
        expect(page.locator(f'#kill-results li[data-replica="{replica}"]')).to_contain_text("halted")
    expect(page.locator("#kill-results li.error")).to_have_count(0)
    for replica in mesh.serving_replicas:
        expect(cell(replica, "state")).to_have_attribute("data-state", "halted", timeout=15_000)
    expect(cell(second, "state")).to_contain_text("kill switch pressed in the console")
    states = page.locator('tr[data-session] td[data-col="state"]')
    expect(states).not_to_have_count(0)
    for index in range(states.count()):     # the skill run's sessions too: every session of every replica
        expect(states.nth(index)).to_have_attribute("data-state", "halted", timeout=15_000)
    screenshot(page, "kill-switch")

    page.get_by_role("button", name=f"Resume session {SESSION} on {second}").click()
    expect(cell(second, "state")).to_have_attribute("data-state", "ready", timeout=15_000)
    expect(cell(first, "state")).to_have_attribute("data-state", "halted")


def is_halt_all(request: Request) -> bool:
    return request.method == "POST" and request.url.endswith("/ml/serving/halt-all")


def tab_to(page: Page, selector: str) -> None:
    page.locator("body").focus()
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    pytest.fail(f"{selector} is not reachable with Tab")


def test_the_kill_switch_checkbox_also_fails_the_batch_a_model_is_running(mesh, page: Page):
    """Unticked (the default), a batch on the model when the kill switch is pressed is answered in full after
    the halt; ticked from the keyboard, the page sends cancel_running and the same kind of batch fails at once
    with UNAVAILABLE while the model is still running it. The held batch is on the second replica."""
    register_slow_model(mesh)
    replica = mesh.serving_replicas[1]
    answer = page.locator(f'#kill-results li[data-replica="{replica}"]')
    with HeldBatch(mesh, replica, "console-held") as held:
        signed_in(page, mesh, "ml/serving")
        option = page.get_by_label("Also fail the batches running now (nothing more is answered)", exact=True)
        expect(option).not_to_be_checked()

        running = held.start()
        with page.expect_request(is_halt_all) as sent:
            page.get_by_role("button", name="Kill switch: halt every replica").click()
        assert sent.value.post_data_json == {"reason": "kill switch pressed in the console by console-operator",
                                             "cancel_running": False}
        expect(answer).to_contain_text("console-held")
        expect(page.locator("#kill-results")).to_contain_text("batches already running finish")
        assert held.session().state == serving_pb2.SESSION_STATE_HALTED
        assert not running.done() and held.running() == 1          # halted, and the model still runs the batch...
        assert len(running.result(120).predictions) == held.rows   # ...which is answered in full
        held.resume()

        tab_to(page, "#kill-cancel-running")
        page.keyboard.press("Space")
        expect(option).to_be_checked()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.classList.contains('kill')")
        running = held.start()
        with page.expect_request(is_halt_all) as sent:
            page.keyboard.press("Enter")
        assert sent.value.post_data_json["cancel_running"] is True
        with pytest.raises(grpc.RpcError) as failed:
            running.result(120)
        assert held.running() == 1     # failed while the model was still running its batch: nothing waited for it
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "halted: kill switch pressed in the console" in failed.value.details()
        expect(answer).to_contain_text("console-held")
        expect(page.locator("#kill-results li.error")).to_have_count(0)
        expect(page.locator("#kill-results")).to_contain_text("the batches that were running failed too")
        state = page.locator(f'tr[data-session="console-held"][data-replica="{replica}"] td[data-col="state"]')
        expect(state).to_have_attribute("data-state", "halted")
        screenshot(page, "kill-switch-cancel-running")

        # The Serving page's Halt buttons take the same option, from one checkbox above the table
        held.resume()
        page.get_by_label("Halt buttons also fail the batch running now (nothing more is answered)").check()
        halt = page.get_by_role("button", name=f"Halt session console-held on {replica}")
        expect(halt).to_be_enabled()
        running = held.start()
        with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/console-held/halt")) as sent:
            halt.click()
        assert sent.value.post_data_json == {"reason": "halted from the console", "cancel_running": True}
        with pytest.raises(grpc.RpcError) as failed:
            running.result(120)
        assert held.running() == 1
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "halted: halted from the console" in failed.value.details()
        expect(state).to_have_text("halted: halted from the console")

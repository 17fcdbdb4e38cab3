"""The `mlmesh` verbs against a real registry process: output shapes, exit codes, one-line errors."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from services.core.auth.policy import ALL_SCOPES, REGISTRY_READ
from services.core.auth.tokens import TokenVerifier
from services.core.errors import Unauthenticated
from services.core.settings import AuthSettings, MeshSettings
from services.mesh.cli import app
from tests.mesh.conftest import SEED_MODELS, SKILLS_DIR, free_port, write_topology

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def invoke(cli, *args: str):
    return cli.invoke(app, list(args))


def as_json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---- token ----

def test_token_defaults_to_every_scope_for_the_audience(cli):
    result = invoke(cli, "token", "--aud", "registry")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    principal = TokenVerifier.from_settings(MeshSettings(), AuthSettings(), "registry").verify(token)
    assert principal.subject == "operator"
    assert principal.scopes == ALL_SCOPES


def test_token_with_scopes_ttl_subject(cli):
    data = as_json(invoke(cli, "token", "--aud", "registry", "--scope", REGISTRY_READ, "--ttl", "120",
                          "--subject", "alice", "--json"))
    principal = TokenVerifier.from_settings(MeshSettings(), AuthSettings(), "registry").verify(data["token"])
    assert (principal.subject, principal.scopes) == ("alice", frozenset({REGISTRY_READ}))
    assert data["scopes"] == [REGISTRY_READ]
    assert 0 < principal.expires_at - data["expires_at"] + 120 <= 121


def test_console_token_is_accepted_by_each_service_the_console_calls_with_operator_scopes(cli):
    token = invoke(cli, "token", "--console").stdout.strip()
    for service in ("registry", "puller", "serving"):
        principal = TokenVerifier.from_settings(MeshSettings(), AuthSettings(), service).verify(token)
        assert principal.subject == "operator" and {"serving.halt", "skills.run", "puller.pull"} <= principal.scopes
        assert "puller.allow_pickle" not in principal.scopes
    with pytest.raises(Unauthenticated):
        TokenVerifier.from_settings(MeshSettings(), AuthSettings(), "compiler").verify(token)


def test_token_needs_an_audience(cli):
    assert_one_line_error(invoke(cli, "token"), 2, "aud")


def test_token_refuses_unknown_scope(cli):
    assert_one_line_error(invoke(cli, "token", "--aud", "registry", "--scope", "registry.raed"), 2, "scope")


# ---- skills ----

def test_publish_is_idempotent_and_prints_the_lock(cli):
    spec = SKILLS_DIR / "regime_aware_alpha.yaml"
    first = as_json(invoke(cli, "skills", "publish", str(spec), "--json"))
    version = first["version"]["version"]
    assert HEX64.match(version)
    assert set(first["version"]["lock"]) == {"regime_classifier@prod", "alpha_bull@prod", "alpha_bear@prod",
                                             "alpha_sideways@prod"}
    again = invoke(cli, "skills", "publish", str(spec))
    assert again.exit_code == 0, again.output
    assert version in again.stdout and "already published" in again.stdout
    assert "regime_classifier@prod" in again.stdout   # the lock table


def test_reordered_keys_give_the_same_version(cli, tmp_path):
    spec = SKILLS_DIR / "multi_horizon_forecast.yaml"
    original = as_json(invoke(cli, "skills", "publish", str(spec), "--json"))["version"]["version"]

    def reverse(value):
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        return [reverse(v) for v in value] if isinstance(value, list) else value

    reordered = tmp_path / "reordered.yaml"
    reordered.write_text(yaml.safe_dump(reverse(yaml.safe_load(spec.read_text())), sort_keys=False))
    assert reordered.read_text() != spec.read_text()
    result = invoke(cli, "skills", "publish", str(reordered))
    assert result.exit_code == 0, result.output
    assert original in result.stdout


def test_publish_with_expect(cli):
    spec = str(SKILLS_DIR / "regime_aware_alpha.yaml")
    version = as_json(invoke(cli, "skills", "publish", spec, "--json"))["version"]["version"]
    assert invoke(cli, "skills", "publish", spec, "--expect", version).exit_code == 0
    assert_one_line_error(invoke(cli, "skills", "publish", spec, "--expect", "0" * 64), 1, "expected_version")


def test_malformed_yaml_names_the_field_and_exits_2(cli, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsteps: [\n  - id: a\n")
    assert_one_line_error(invoke(cli, "skills", "publish", str(broken)), 2, "spec_yaml")

    spec = yaml.safe_load((SKILLS_DIR / "regime_aware_alpha.yaml").read_text())
    spec["steps"][0]["interface"] = "oracle"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(spec))
    assert_one_line_error(invoke(cli, "skills", "publish", str(wrong)), 2, "steps[0].interface")


def test_unresolvable_model_is_not_found(cli, tmp_path):
    spec = yaml.safe_load((SKILLS_DIR / "multi_horizon_forecast.yaml").read_text())
    spec["steps"][3]["model"] = "no_such_model@prod"
    path = tmp_path / "unresolvable.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert_one_line_error(invoke(cli, "skills", "publish", str(path)), 3, "no_such_model")


def test_unknown_skill_exits_3(cli):
    assert_one_line_error(invoke(cli, "skills", "show", "no_such_skill"), 3, "no_such_skill")
    assert_one_line_error(invoke(cli, "skills", "show", "Bad Name"), 2, "ref")


def test_skills_list_and_show(cli):
    invoke(cli, "skills", "publish", str(SKILLS_DIR / "regime_aware_alpha.yaml"))
    names = {s["name"] for s in as_json(invoke(cli, "skills", "list", "--json"))["skills"]}
    assert "regime_aware_alpha" in names
    shown = as_json(invoke(cli, "skills", "show", "regime_aware_alpha@latest", "--json"))
    assert shown["version"]["name"] == "regime_aware_alpha"
    assert shown["version"]["spec"]["name"] == "regime_aware_alpha"
    assert [v["version"] for v in shown["versions"]] == [shown["version"]["version"]]
    human = invoke(cli, "skills", "show", "regime_aware_alpha")
    assert human.exit_code == 0 and "alpha_bull@prod" in human.stdout and "versions" in human.stdout


# ---- artifacts, lineage, status ----

def test_artifacts_list_and_show(cli):
    everything = as_json(invoke(cli, "artifacts", "list", "--json"))["artifacts"]
    assert {a["name"] for a in everything} >= set(SEED_MODELS)
    only = as_json(invoke(cli, "artifacts", "list", "--name", "alpha_bull", "--json"))["artifacts"]
    assert [a["name"] for a in only] == ["alpha_bull"]
    shown = as_json(invoke(cli, "artifacts", "show", "alpha_bull@prod", "--json"))
    assert shown["id"] == only[0]["id"] and shown["manifest"]["metadata"]["layers"] == [6, 32, 3]
    human = invoke(cli, "artifacts", "show", shown["id"])
    assert human.exit_code == 0 and "model.safetensors" in human.stdout and "latest, prod" in human.stdout
    assert_one_line_error(invoke(cli, "artifacts", "show", "no_such_model@prod"), 3)
    assert_one_line_error(invoke(cli, "artifacts", "show", "sha256:xyz"), 2, "ref")


def test_lineage_of_an_artifact_name(cli):
    invoke(cli, "skills", "publish", str(SKILLS_DIR / "regime_aware_alpha.yaml"))
    graph = as_json(invoke(cli, "lineage", "alpha_bear@prod", "--direction", "down", "--json"))
    kinds = {n["kind"] for n in graph["nodes"]}
    assert graph["root"].startswith("artifact:sha256:") and "skill" in kinds
    up = as_json(invoke(cli, "lineage", graph["root"], "--direction", "up", "--depth", "1", "--json"))
    assert "source:test://alpha_bear" in {n["entity"] for n in up["nodes"]}
    assert invoke(cli, "lineage", "alpha_bear@prod").exit_code == 0


def test_status_reports_health_and_counts(cli):
    services = as_json(invoke(cli, "status", "--json"))["services"]
    registry = next(s for s in services if s["service"] == "registry")
    assert registry["health"] == "SERVING" and registry["artifacts"] >= len(SEED_MODELS)
    assert "skills" in registry


def test_unreachable_registry_is_one_line(cli, tmp_path, monkeypatch):
    topology = write_topology(tmp_path / "down.yaml", {"registry": {"module": "services.registry",
                                                                    "port": free_port()}})
    monkeypatch.setenv("MLMESH_TOPOLOGY_FILE", str(topology))
    assert_one_line_error(invoke(cli, "skills", "list"), 1, "not reachable")
    services = as_json(invoke(cli, "status", "--json"))["services"]
    assert services == [{"service": "registry", "address": services[0]["address"], "protocol": "grpc",
                         "health": "DOWN"}]

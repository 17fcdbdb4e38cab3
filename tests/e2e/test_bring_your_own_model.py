"""Bring your own model, as a user does it against a running mesh (`mlmesh up`, Envoy in front):

- a scikit-learn pipeline exported with skl2onnx, pushed with `mlmesh push` (the README's commands), served
  on both replicas and called four ways through Envoy: typed gRPC (the public `mlmesh` client), KServe v2
  (tritonclient, the model's own tensor names), REST and the `data.ml.classify` MCP tool: every answer equal
  to scikit-learn's own predict_proba;
- an XGBoost regressor's native file pushed with the public Python client through Envoy, then called with
  `predictor("name@prod")` (the client finds or deploys the session and pins its replica): equal to
  XGBoost's own predict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
import xgboost
from tritonclient.grpc import InferInput

import mlmesh
from examples.train_churn import FEATURES, train
from mlmesh.v1 import serving_pb2
from services.core.auth.policy import ALL_SCOPES
from tests.e2e.conftest import REPO, Mesh
from tests.e2e.front import Front, mcp_client, rest

SESSION = "churn-e2e"


def close(served, expected) -> None:
    """The issue's rule: float32 graphs against float64 libraries, max |d| <= 1e-4 x max(1, |y|)."""
    served, expected = np.asarray(served, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert served.shape == expected.shape
    assert np.all(np.abs(served - expected) <= 1e-4 * np.maximum(1.0, np.abs(expected))), \
        np.abs(served - expected).max()


def cli(mesh: Mesh, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLMESH_HOME": str(mesh.home),
           "MLMESH_TOPOLOGY_FILE": str(mesh.home.parent / "topology.yaml")}
    return subprocess.run([sys.executable, "-m", "services.mesh", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


async def deploy_on_every_replica(front: Front, model: str, replicas: set[str]) -> None:
    made: set[str] = set()
    for _ in range(12):
        try:
            session = await front.serving.Deploy(serving_pb2.DeployRequest(model=model, session_id=SESSION),
                                                 metadata=front.md("serving"), timeout=120)
            assert session.state == serving_pb2.SESSION_STATE_READY
            made.add(session.replica)
        except grpc.aio.AioRpcError as exc:   # a replica that already holds the session
            assert exc.code() == grpc.StatusCode.ALREADY_EXISTS, exc
        if made == replicas:
            return
    pytest.fail(f"Envoy never reached every replica: deployed on {sorted(made)}")


async def test_a_scikit_learn_pipeline_pushed_with_the_cli_answers_four_ways(mesh, tmp_path):
    model, x = train()
    rows = x[:5].astype(np.float64)
    expected = model.predict_proba(rows)
    done = subprocess.run([sys.executable, "examples/train_churn.py", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    pushed = cli(mesh, "push", str(tmp_path / "churn.onnx"), "--name", "churn", "--alias", "prod",
                 "--labels", "stay,churn", "--reference", str(tmp_path / "churn_sample.csv"), "--json")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    artifact = json.loads(pushed.stdout)
    assert artifact["framework"] == "onnx" and artifact["interface"] == "classifier"
    assert artifact["metadata"]["feature_names"] == FEATURES and artifact["metadata"]["training_stats"]

    replicas = {f"serving@{address}" for address in mesh.serving_replicas}
    async with grpc.aio.insecure_channel(mesh.envoy) as channel:
        front = Front(mesh, channel)
        await deploy_on_every_replica(front, "churn@prod", replicas)

        # typed gRPC, through the public client on Envoy's port
        token = mesh.issuer.mint("e2e-service", ["registry", "puller", "serving"], ALL_SCOPES)
        with mlmesh.Mesh(mesh.envoy, token) as client:
            classified = client.classifier(session=SESSION).classify(
                [dict(zip(FEATURES, row)) for row in rows.tolist()])
        assert model.classes_.tolist() == [0, 1]
        labels = ["stay", "churn"]   # --labels, in the model's class order
        close([[c.scores[label] for label in labels] for c in classified], expected)
        assert [c.label for c in classified] == [labels[i] for i in expected.argmax(axis=1)]

        # KServe v2 with tritonclient: the model's own input tensor
        triton = triton_aio.InferenceServerClient(mesh.envoy)
        headers = {"authorization": f"Bearer {mesh.token('serving')}"}
        try:
            metadata = await triton.get_model_metadata(SESSION, headers=headers, as_json=True)
            (tensor_in,) = metadata["inputs"]
            assert tensor_in["name"] == "X" and tensor_in["datatype"] == "FP32"   # as skl2onnx named it
            infer_input = InferInput(tensor_in["name"], list(rows.shape), "FP32")
            infer_input.set_data_from_numpy(rows.astype(np.float32))
            result = await triton.infer(SESSION, [infer_input], headers=headers)
            probabilities = next(o["name"] for o in metadata["outputs"] if o["name"] != "label")
            close(result.as_numpy(probabilities), expected)
        finally:
            await triton.close()

        # REST through Envoy's transcoder
        status, body = await rest(mesh, "POST", "/ml/classify",
                                  {"sessionId": SESSION, "rows": [{"values": r} for r in rows.tolist()]}, "serving")
        assert status == 200, body
        close([[s["probability"] for s in sorted(c["scores"], key=lambda s: labels.index(s["label"]))]
               for c in body["classifications"]], expected)

        # the MCP tool an agent calls
        async with mcp_client(mesh) as agent:
            answered = await agent.call_tool("data.ml.classify", {"session_id": SESSION, "rows": rows.tolist()})
        assert not answered.is_error, answered.content
        assert [c["label"] for c in answered.structured_content["classifications"]] == [c.label for c in classified]

        # the README's last command: by feature name, through the `mlmesh` command
        named = [f"--named={name}={value}" for name, value in zip(FEATURES, rows[0].tolist())]
        answered = cli(mesh, "classify", SESSION, *named, "--json")
        assert answered.returncode == 0, answered.stdout + answered.stderr
        assert json.loads(answered.stdout)["classifications"][0]["label"] == classified[0].label

        # the input rules know the model's features from the reference sample: an absurd tenure is refused
        with mlmesh.Mesh(mesh.envoy, token) as client, pytest.raises(mlmesh.InvalidArgument) as refused:
            client.classifier(session=SESSION).classify([[5000.0, 70.0, 1.0, 12.0]])
        assert "tenure_months" in refused.value.message and refused.value.field == "rows[0]"


async def test_an_xgboost_file_pushed_with_the_python_client_is_called_by_its_name(mesh, tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 6))
    y = x @ np.array([1.5, -2.0, 0.5, 0.0, 3.0, -1.0]) + rng.normal(0, 0.1, 400)
    regressor = xgboost.XGBRegressor(n_estimators=25, max_depth=3, random_state=0).fit(x, y)
    regressor.save_model(tmp_path / "demand.ubj")
    np.savetxt(tmp_path / "sample.csv", x[:200], delimiter=",", header=",".join(f"f{i}" for i in range(6)),
               comments="")

    token = mesh.issuer.mint("e2e-service", ["registry", "puller", "serving"], ALL_SCOPES)
    stages: list[str] = []
    with mlmesh.Mesh(mesh.envoy, token) as client:
        artifact = client.push(tmp_path / "demand.ubj", name="demand", aliases=["prod"],
                               reference=tmp_path / "sample.csv", progress=lambda stage, done, total: stages.append(stage))
        assert artifact.framework == "xgboost" and artifact.interfaces == ("predictor",)
        assert {"hash", "upload"} <= set(stages)
        assert client.artifact("demand@prod").id == artifact.id

        predictor = client.predictor("demand@prod")
        assert predictor.replica in {f"serving@{a}" for a in mesh.serving_replicas}
        for _ in range(4):   # every call reaches the replica that holds the session, wherever Envoy would send it
            predicted = predictor.predict(x[:8])
            close([p.value for p in predicted], regressor.predict(x[:8]))

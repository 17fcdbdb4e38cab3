"""Settings from MLMESH_* variables, and service addresses from the topology or the built-in map."""

from pathlib import Path

import pytest

from services.core.errors import InvalidArgument, NotFound
from services.core.settings import MeshSettings, MLSettings
from services.core.topology import FALLBACK, load_topology, mcp_ml_url

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_topology_lists_every_service_of_the_fallback_map():
    committed = load_topology(REPO / "deploy" / "topology.yaml")
    fallback = load_topology(None)
    for name in FALLBACK:
        assert committed.get(name).port == fallback.get(name).port, name
        assert committed.get(name).module == fallback.get(name).module, name


def test_missing_topology_file_falls_back_to_the_built_in_map(tmp_path):
    topology = load_topology(tmp_path / "absent.yaml")
    assert topology.get("registry").address == "127.0.0.1:50051"
    assert topology.get("mlmesh-ml-mcp").url == "http://127.0.0.1:8765"


def test_mcp_ml_url_comes_from_the_topology_unless_configured(tmp_path):
    (tmp_path / "t.yaml").write_text("services:\n  mlmesh-ml-mcp: {port: 9999, protocol: http, host: 10.0.0.5}\n")
    topology = load_topology(tmp_path / "t.yaml")
    assert mcp_ml_url("", topology) == "http://10.0.0.5:9999/mcp/ml"
    assert mcp_ml_url("https://ml.example/mcp/ml", topology) == "https://ml.example/mcp/ml"


def test_bad_topology_and_unknown_service(tmp_path):
    (tmp_path / "bad.yaml").write_text("services:\n  registry: {port: 70000}\n")
    with pytest.raises(InvalidArgument) as caught:
        load_topology(tmp_path / "bad.yaml")
    assert caught.value.field == "topology_file"
    with pytest.raises(NotFound):
        load_topology(None).get("nope")


def test_settings_read_the_nine_ml_knobs_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLMESH_ML_CACHE_MAX_BYTES", "1024")
    monkeypatch.setenv("MLMESH_ML_SERVING_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("MLMESH_ML_HF_HUB_OFFLINE", "true")
    monkeypatch.setenv("MLMESH_MCP_ML_CANONICAL_URI", "https://ml.example/mcp/ml")
    ml = MLSettings()
    assert (ml.ml_cache_max_bytes, ml.ml_serving_max_batch_size, ml.ml_hf_hub_offline) == (1024, 7, True)
    assert ml.mcp_ml_canonical_uri == "https://ml.example/mcp/ml"
    assert set(MLSettings.model_fields) >= {
        "ml_cache_max_bytes", "ml_cache_max_entries", "ml_serving_max_batch_size", "ml_serving_max_queue_delay_ms",
        "ml_ood_z_threshold", "ml_hf_hub_offline", "ml_torchhub_offline", "mcp_ml_canonical_uri", "mcp_ml_url",
    }
    monkeypatch.setenv("MLMESH_HOME", str(tmp_path / "h"))
    mesh = MeshSettings()
    assert mesh.database_url == f"sqlite+aiosqlite:///{tmp_path / 'h' / 'mlmesh.db'}"
    monkeypatch.setenv("MLMESH_ML_SERVING_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValueError):
        MLSettings()

"""The committed stubs must be exactly what scripts/gen_protos.py makes from protos/."""

import filecmp
import importlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "protos" / "mlmesh" / "v1"


def test_committed_stubs_match_regeneration(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)], check=True)
    fresh = tmp_path / "mlmesh" / "v1"
    made = sorted(p.name for p in fresh.iterdir())
    assert made, "the generator produced nothing"
    stale = [name for name in made if not (GENERATED / name).exists() or not filecmp.cmp(fresh / name, GENERATED / name, shallow=False)]
    assert not stale, f"regenerate with `make protos` and commit: {stale}"
    orphans = {p.name for p in GENERATED.iterdir() if p.suffix in {".py", ".pyi", ".pb"} and p.name != "__init__.py"} - set(made)
    assert not orphans, f"generated files with no .proto behind them: {sorted(orphans)}"


def test_every_contract_imports_and_declares_its_service():
    expected = {
        "registry": "Registry",
        "puller": "Puller",
        "compiler": "Compiler",
        "serving": "Serving",
        "operations": "Operations",
    }
    for module, service in expected.items():
        pb2 = importlib.import_module(f"mlmesh.v1.{module}_pb2")
        assert service in pb2.DESCRIPTOR.services_by_name, module
        importlib.import_module(f"mlmesh.v1.{module}_pb2_grpc")


def test_rest_annotations_stay_under_ml():
    from google.api import annotations_pb2
    from mlmesh.v1 import registry_pb2, serving_pb2

    for pb2 in (registry_pb2, serving_pb2):
        for service in pb2.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                opts = method.GetOptions()
                if not opts.HasExtension(annotations_pb2.http):
                    continue
                rule = opts.Extensions[annotations_pb2.http]
                path = getattr(rule, rule.WhichOneof("pattern"))
                assert path.startswith("/ml/"), (method.full_name, path)

"""Regenerate the Python stubs (+ .pyi) for protos/mlmesh/v1 in place, or into --out for comparison.

Usage: python scripts/gen_protos.py [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc
from google import api as google_api

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
PROTO_DIR = PROTO_ROOT / "mlmesh" / "v1"


def include_dirs() -> list[Path]:
    """protos/, the well-known types bundled with grpc_tools, and googleapis' google/api/*.proto."""
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    googleapis = Path(google_api.__path__[0]).parent.parent
    return [PROTO_ROOT, well_known, googleapis]


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_DIR.glob("*.proto"))
    args = ["grpc_tools.protoc", *(f"-I{d}" for d in include_dirs())]
    args += [f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"]
    # Envoy's grpc_json_transcoder reads this descriptor set (with imports and source info).
    descriptors = out / "mlmesh" / "v1" / "descriptors.pb"
    args += [f"--descriptor_set_out={descriptors}", "--include_imports", "--include_source_info", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    generate(out)


if __name__ == "__main__":
    main(sys.argv[1:])

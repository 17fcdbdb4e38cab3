"""The Envoy configs committed under deploy/envoy/, each generated from a topology the repo already holds.

    python -m services.mesh.envoy.examples          # rewrite them
    python -m services.mesh.envoy.examples --check  # exit 1 when one is stale (the tests do the same)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from services.core.topology import ServiceEndpoint, Topology, load_topology
from services.mesh.envoy.config import REPO_ROOT, EnvoyOptions, envoy_options, envoy_yaml, load_envoy_options

DEPLOY = REPO_ROOT / "deploy"
LOCAL_EXAMPLE = DEPLOY / "envoy" / "envoy.yaml"            # `mlmesh up` on the default topology, run from the repo
COMPOSE_EXAMPLE = DEPLOY / "envoy" / "envoy.compose.yaml"  # mounted into the Envoy container by compose.yaml
COMPOSE_DESCRIPTOR = "/etc/envoy/descriptors.pb"            # where compose.yaml mounts the descriptor set


def compose_topology_raw(compose_file: Path = DEPLOY / "compose.yaml") -> dict:
    """The topology compose.yaml gives its containers (`configs.topology.content`)."""
    compose = yaml.safe_load(compose_file.read_text())
    return yaml.safe_load(compose["configs"]["topology"]["content"])


def topology_from_raw(raw: dict) -> tuple[Topology, EnvoyOptions]:
    services = {name: ServiceEndpoint(name=name, **spec) for name, spec in (raw.get("services") or {}).items()}
    return Topology(services=services), envoy_options(raw, "compose.yaml's topology")


def render_examples(*, descriptor_override: str | None = None) -> dict[Path, str]:
    """Each committed example and its text. `descriptor_override`: render with another descriptor path
    (tests validate the compose config against the repo's descriptor set)."""
    topology_file = DEPLOY / "topology.yaml"
    local = envoy_yaml(load_topology(topology_file), load_envoy_options(topology_file))
    compose_topology, compose_options = topology_from_raw(compose_topology_raw())
    compose = envoy_yaml(compose_topology, compose_options,
                         descriptor_set=descriptor_override or COMPOSE_DESCRIPTOR)
    return {LOCAL_EXAMPLE: local, COMPOSE_EXAMPLE: compose}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.mesh.envoy.examples", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale examples")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render_examples().items():
        current = path.read_text() if path.is_file() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'} {path.relative_to(REPO_ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

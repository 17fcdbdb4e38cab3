"""Container health checks where no native probe exists (compose): exit 0 only when the service is SERVING.

    python -m services.mesh.envoy.probe grpc 127.0.0.1:50051       # grpc.health.v1, overall status
    python -m services.mesh.envoy.probe http http://127.0.0.1:8765/healthz
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from services.core.topology import ServiceEndpoint
from services.mesh.health import SERVING, check_health


def probe(kind: str, target: str, timeout_s: float = 2.0) -> str:
    if kind == "grpc":
        host, _, port = target.rpartition(":")
        endpoint = ServiceEndpoint(name="probe", host=host, port=int(port))
    elif kind == "http":
        url = urlsplit(target)
        endpoint = ServiceEndpoint(name="probe", host=url.hostname or "127.0.0.1", port=url.port or 80,
                                   protocol="http", health=url.path or "/")
    else:
        raise ValueError(f"unknown probe kind {kind!r} (grpc or http)")
    return check_health(endpoint, timeout_s=timeout_s)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    status = probe(*args)
    print(status)
    return 0 if status == SERVING else 1


if __name__ == "__main__":
    raise SystemExit(main())

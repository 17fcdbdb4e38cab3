"""bench/byom.py section B's load: every server's answer checked against the model in this process, then the
same tritonclient ModelInfer closed loop (bench/_load.closed_loop) against each, interleaved per concurrency
and repeated in rounds whose server order rotates, so drift in the machine's load (other sessions share these
cores) falls on every server alike."""

from __future__ import annotations

import numpy as np
from rich.markup import escape
from tritonclient.grpc import InferInput, InferRequestedOutput

from _byom_models import BenchModel
from _byom_servers import Endpoint, MeshServices
from _load import CONCURRENCY, Cell, closed_loop, console

MESH = "mlmesh"
DTYPES = {"FP32": np.float32, "FP64": np.float64}
PARITY_ATOL = 1e-4


def requests_for(endpoint: Endpoint, rows: np.ndarray) -> list[tuple[list, list]]:
    """One (inputs, outputs) per sample row: a batch-1 row per request, in the endpoint's input dtype."""
    out = []
    for row in rows:
        x = row[None, :].astype(DTYPES[endpoint.datatype])
        tensor = InferInput(endpoint.input_name, list(x.shape), endpoint.datatype)
        tensor.set_data_from_numpy(x)
        out.append(([tensor], [InferRequestedOutput(endpoint.output)]))
    return out


def short(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:240]


def merge(cells: list[Cell], seconds: float) -> Cell:
    """Rounds of one (server, concurrency) as one cell: completions over all the measured time, the median
    round's percentiles, CPU per request weighted by the requests of each round."""
    done = sum(c.done for c in cells)
    if not done:
        return Cell(0.0, 0.0, 0.0, 0, sum(c.errors for c in cells), next((c.first_error for c in cells), ""))

    def weighted(field: str) -> float:
        return sum(getattr(c, field) * c.done for c in cells if c.done) / done

    return Cell(done / (seconds * len(cells)), float(np.median([c.p50_ms for c in cells if c.done])),
                float(np.median([c.p99_ms for c in cells if c.done])), done, sum(c.errors for c in cells),
                next((c.first_error for c in cells if c.first_error), ""), weighted("cpu_us"),
                weighted("client_cpu_us"))


async def measure(model: BenchModel, names: list[str], endpoints: dict, clients: dict, pids: dict, headers: dict,
                  seconds: float, rounds: int, reasons: dict, mesh: MeshServices | None) -> tuple[dict, dict]:
    """({(server, concurrency): Cell}, {concurrency: mlmesh's mean batch size there}); a server whose answer
    differs from the model's gets a reason instead of cells."""
    want = np.asarray(model.native(model.rows[:8]), np.float64)
    live = {}
    for name in names:
        endpoint = endpoints.get((name, model.name))
        if endpoint is None:
            continue
        requests = requests_for(endpoint, model.rows[:64])
        client = clients[endpoint.url]
        try:
            got = []
            for inputs, outputs in requests[:8]:
                reply = await client.infer(endpoint.model, inputs, outputs=outputs, headers=headers)
                got.append(reply.as_numpy(endpoint.output)[0, endpoint.column])
            if not float(np.max(np.abs(np.asarray(got, np.float64) - want))) <= PARITY_ATOL:
                raise RuntimeError(f"answered P(class 1) {got[:3]}..., the model {want[:3].tolist()}...")
        except Exception as exc:  # noqa: BLE001 - reported as the rows' reason
            reasons[f"{name} {model.name}"] = why = f"wrong or no answer: {short(exc)}"
            console.print(f"  [yellow]{name} {model.name} not measured[/]: {escape(why)}")
            continue
        live[name] = (endpoint, requests, client)
    runs: dict[tuple[str, int], list[Cell]] = {}
    formed: dict[int, dict[int, int]] = {}
    order = list(live)
    for c in CONCURRENCY:
        for turn in range(rounds):
            for name in order[turn % len(order):] + order[:turn % len(order)] if order else ():
                endpoint, requests, client = live[name]

                def call(i: int, endpoint=endpoint, requests=requests, client=client):
                    inputs, outputs = requests[i % len(requests)]
                    return client.infer(endpoint.model, inputs, outputs=outputs, headers=headers)

                counted = name == MESH and mesh is not None
                before = await mesh.batch_counts(endpoint.model) if counted else {}
                runs.setdefault((name, c), []).append(
                    await closed_loop(call, c, seconds, server_pid=pids.get(name)))
                if counted:
                    after = await mesh.batch_counts(endpoint.model)
                    into = formed.setdefault(c, {})
                    for size, count in after.items():
                        into[size] = into.get(size, 0) + count - before.get(size, 0)
    batches = {c: sum(k * v for k, v in f.items()) / max(1, sum(f.values())) for c, f in formed.items()}
    return {key: merge(cells, seconds) for key, cells in runs.items()}, batches

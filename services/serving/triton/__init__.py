"""Triton Inference Server as a serving executor.

`launcher`: the local `tritonserver` from .triton-venv (or an existing Triton by URL), `available()`.
`repository`: model repository entries (python-backend wrappers for torch and ONNX models).
`executor`: `TritonExecutor`, which sends the scheduler's batches to Triton, one request each.
Set-up of the local binary: scripts/setup_triton.sh (`make triton`).
"""

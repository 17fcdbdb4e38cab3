"""Imported models (docs/byom.md): their ONNX graph compiled to int8 or fp16 and validated against itself."""

"""The compiler service: artifacts -> ONNX, TorchScript / AOTInductor, quantized and TensorRT outputs,
each validated against the eager model, stored write-once, registered with lineage, and laid out as a
Triton model repository entry."""

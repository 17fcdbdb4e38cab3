"""The puller service: pulls models from Hugging Face and TorchHub into the object store, verified."""

"""The `mlmesh up --demo` seed: small real models trained on synthetic data, registered, then the seed skills."""

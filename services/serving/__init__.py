"""Serving: typed interfaces over model backends, a continuous-batching engine, rules and the kill switch.

Subpackages: `engine` (scheduler, executors, loops, stats), `rules` (input guards, circuit breaker, packs),
`interfaces` (the five ABCs, their results, and the model backends), `sessions` (one deployed model each,
and the manager with halt / halt-all / watch). See docs/serving.md for the API the servicer builds on.
"""

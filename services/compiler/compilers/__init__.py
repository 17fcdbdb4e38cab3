"""Compilers: each registers under an alias with `@register_compiler("alias")` (see registry.py)."""

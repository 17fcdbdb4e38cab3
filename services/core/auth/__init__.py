"""Mesh identity: the issuer key, ES256 tokens, the caller's principal and the scope policy."""

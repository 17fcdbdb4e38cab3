"""The MCP gateway: `data.ml.*` tools over streamable HTTP and stdio, each turned into gRPC calls.

An OAuth protected resource (RFC 9728 / RFC 8707): agent tokens must name the canonical URI as their
audience; backends are called with the gateway's own mesh identity, never with the agent's token.
"""

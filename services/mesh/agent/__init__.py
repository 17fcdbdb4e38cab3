"""Agents that use mlmesh only through the MCP gateway: the AgentSpec (spec.py), its plan's template syntax
(templates.py), the player that runs a plan through a real MCP client session (player.py, transport.py)
and `mlmesh agent run` (cli.py)."""

"""`python -m services.mesh` is the `mlmesh` command (handy where the console script is not on PATH)."""

from services.mesh.cli import main

main()

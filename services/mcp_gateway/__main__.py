from services.mcp_gateway.cli import main

main()

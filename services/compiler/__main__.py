from services.compiler.server import main

main()

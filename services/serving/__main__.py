from services.serving.server import main

main()

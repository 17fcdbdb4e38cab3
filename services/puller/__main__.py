from services.puller.server import main

main()

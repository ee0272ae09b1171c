from tiering.cli import main

main()

from emocli.cli.app import main

main()

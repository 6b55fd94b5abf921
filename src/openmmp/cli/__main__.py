from openmmp.cli.main import main

main()

from tools.standins.build import main

main()

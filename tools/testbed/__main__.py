from tools.testbed.artifacts import main

main()

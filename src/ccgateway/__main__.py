from ccgateway.cli import main

main()

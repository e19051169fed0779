from toonvision.cli import main

main()

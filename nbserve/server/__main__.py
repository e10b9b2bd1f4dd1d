from .master import main

main()

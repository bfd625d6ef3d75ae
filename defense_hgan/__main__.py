from defense_hgan.cli import main

main()

from apps.prune.main import main

main()

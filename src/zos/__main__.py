from zos.cli import main

main()

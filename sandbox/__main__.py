from sandbox.cli.app import main

main(prog_name="sandbox")

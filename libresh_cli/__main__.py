from libresh_cli.cli.main import run

run()

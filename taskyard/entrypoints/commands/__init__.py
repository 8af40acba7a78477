"""One module per `taskyard` subcommand. Each has `register(subparsers)`, which adds its
parser and sets `run=` to a function taking the parsed args and returning an exit code.
Heavy imports happen inside `run`, so `taskyard --help` stays quick."""

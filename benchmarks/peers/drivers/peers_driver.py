"""`python -m peers_driver <system> <command> ...`: the command line of one system's
driver (`peers_<system>.Driver`), imported by name so that no system's app is defined in
`__main__`."""

from __future__ import annotations

import importlib
import inspect
import sys

import peers_common


def main(argv: list[str]) -> int:
    module = importlib.import_module(f"peers_{argv[0]}")
    driver = module.Driver()
    if inspect.iscoroutinefunction(driver.enqueue):
        return peers_common.run_cli_async(driver, argv[1:])
    return peers_common.run_cli(driver, argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

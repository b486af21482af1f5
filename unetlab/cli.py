"""The ``unetlab`` command: each subcommand lives in its own module under ``unetlab.commands``."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .argtypes import OneLineParser
from .errors import UnetlabError
from .fs_errors import describe_os_error
from .registry import DISABLE_AUTOLOAD_ENV, PLUGINS_ENV, get_registry

#: subcommand -> module in unetlab.commands providing ``add_parser(subparsers)`` and ``run(args)``
COMMANDS = {
    "plugins": "plugins",
    "check-block": "check_block",
    "report": "report",
    "train": "train",
    "sample": "sample",
    "ablate": "ablate",
    "table": "table",
    "fid": "fid",
    "bench": "bench",
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="unetlab", description="A plugin-based U-Net lab for diffusion models.")
    parser.add_argument("-p", dest="plugins", action="append", default=[], metavar="NAME",
                        help="load this plugin (entry-point, distribution or module name) even when autoload "
                             "is off; -p no:NAME skips an installed one (repeatable)")
    parser.add_argument("--disable-plugin-autoload", action="store_true",
                        help=f"load only unetlab's own blocks and those named with -p (as {DISABLE_AUTOLOAD_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"unetlab.commands.{module}")
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def select_plugins(names, disable_autoload: bool) -> None:
    """Apply ``-p`` and ``--disable-plugin-autoload`` through the environment, so that the
    processes a command starts (a sweep's runs) load the same plugins."""
    if not names and not disable_autoload:
        return
    if names:
        given = [n for n in os.environ.get(PLUGINS_ENV, "").split(",") if n]
        os.environ[PLUGINS_ENV] = ",".join(given + list(names))
    if disable_autoload:
        os.environ[DISABLE_AUTOLOAD_ENV] = "1"
    get_registry.cache_clear()


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    select_plugins(args.plugins, args.disable_plugin_autoload)
    try:
        return args._run(args) or 0
    except UnetlabError as exc:
        print(f"unetlab {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unetlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a read-only folder, a full disk, an unreadable file: one line, no traceback
        print(f"unetlab {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

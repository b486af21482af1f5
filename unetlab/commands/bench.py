"""``unetlab bench SPEC``: training and sampling throughput, memory and TFLOP/s, side by side."""
from __future__ import annotations

import json
from pathlib import Path
import sys

from tabulate import tabulate

from ..bench import run_bench
from ..errors import UnetlabError
from ..frameworks import FRAMEWORKS, PRECISIONS
from ..frameworks.torch_modes import COMPILE_MODES
from ..argtypes import choice_list, non_negative_int, positive_int, positive_int_list


#: every precision some framework takes (each skips those it does not)
ALL_PRECISIONS = tuple(dict.fromkeys(p for f in FRAMEWORKS for p in PRECISIONS[f]))


def add_parser(sub):
    p = sub.add_parser("bench", help="measure train/sample throughput of a spec across modes")
    p.add_argument("spec", help="preset name or model spec YAML")
    p.add_argument("--frameworks", type=choice_list(FRAMEWORKS), default=list(FRAMEWORKS),
                   help=f"comma list of {', '.join(FRAMEWORKS)} (default all)")
    p.add_argument("--precisions", type=choice_list(ALL_PRECISIONS), default=list(ALL_PRECISIONS),
                   help="comma list; unsupported ones are skipped")
    p.add_argument("--batch-sizes", type=positive_int_list, default=[16], help="comma list (default 16)")
    p.add_argument("--compile", default="off",
                   help="torch.compile modes, comma list of off, on (= default), both (= off,on), "
                        "reduce-overhead, max-autotune, max-autotune-no-cudagraphs (default off)")
    p.add_argument("--channels-last", default="auto", choices=("auto", "off", "on", "both"),
                   help="torch channels-last layout (auto: as training picks it when a spec leaves it "
                        "unset: on for the CPU and compiled models)")
    p.add_argument("--steps", type=positive_int, default=5, help="timed steps per case")
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed steps per case")
    p.add_argument("--out", help="write the rows as JSON and a markdown table (OUT.json, OUT.md)")
    return p


def compile_modes(text: str) -> list:
    """``--compile``'s comma list as modes (None: eager); unknown names raise UnetlabError."""
    aliases = {"off": [None], "on": ["default"], "both": [None, "default"]}
    modes = []
    for name in text.split(","):
        name = name.strip()
        if name not in aliases and name not in COMPILE_MODES:
            raise UnetlabError(f"--compile {name!r}: expected off, on, both or one of {', '.join(COMPILE_MODES)}")
        modes += [m for m in aliases.get(name, [name]) if m not in modes]
    return modes


def run(args):
    done = []

    def log(row):  # each row is written as soon as it is measured: a later crash loses nothing
        done.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if args.out:
            Path(args.out + ".json").write_text(json.dumps(done, indent=1))

    rows = run_bench(args.spec, args.frameworks, args.precisions,
                     args.batch_sizes,
                     compile_modes(args.compile), steps=args.steps, warmup=args.warmup, log=log,
                     channels_last={"auto": [None], "off": [False], "on": [True], "both": [False, True]}[args.channels_last])
    table = tabulate(rows, headers="keys", tablefmt="github")
    print(table)
    if args.out:
        Path(args.out + ".md").write_text(table + "\n")
    return 0

"""``unetlab report SPEC``: parameter count and forward FLOPs of a model spec."""
from __future__ import annotations

import json

from ..frameworks import FRAMEWORKS
from ..metrics.model_report import model_report


def add_parser(sub):
    p = sub.add_parser("report", help="parameters and forward GFLOPs of a model spec")
    p.add_argument("spec", help="a preset name (ddpm, adm) or a spec YAML file")
    p.add_argument("--framework", choices=FRAMEWORKS, default="torch",
                   help="count the parameters of this framework's model")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def run(args):
    report = model_report(args.spec, framework=args.framework)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>16}: {value:,}" if isinstance(value, int) else f"{key:>16}: {value}")
    return 0

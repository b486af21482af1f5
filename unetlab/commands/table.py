"""``unetlab table``: not written yet."""


def add_parser(sub):
    return sub.add_parser("table", help="(not available yet)")


def run(args):
    from ..errors import UnetlabError
    raise UnetlabError("unetlab table is not available yet")

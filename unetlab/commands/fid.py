"""``unetlab fid``: not written yet."""


def add_parser(sub):
    return sub.add_parser("fid", help="(not available yet)")


def run(args):
    from ..errors import UnetlabError
    raise UnetlabError("unetlab fid is not available yet")

"""``unetlab train``: not written yet."""


def add_parser(sub):
    return sub.add_parser("train", help="(not available yet)")


def run(args):
    from ..errors import UnetlabError
    raise UnetlabError("unetlab train is not available yet")

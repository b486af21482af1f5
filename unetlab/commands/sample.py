"""``unetlab sample``: not written yet."""


def add_parser(sub):
    return sub.add_parser("sample", help="(not available yet)")


def run(args):
    from ..errors import UnetlabError
    raise UnetlabError("unetlab sample is not available yet")

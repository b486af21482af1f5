"""``unetlab ablate``: not written yet."""


def add_parser(sub):
    return sub.add_parser("ablate", help="(not available yet)")


def run(args):
    from ..errors import UnetlabError
    raise UnetlabError("unetlab ablate is not available yet")

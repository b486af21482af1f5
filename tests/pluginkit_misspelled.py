"""A plugin whose hook name is misspelled (``unetlab_blokcs``): registering it is an error."""
from __future__ import annotations

import unetlab


@unetlab.hookimpl
def unetlab_blokcs():
    return []

"""unetlab's built-in block plugins, registered through the ``unetlab`` entry-point group
exactly as third-party plugins are."""

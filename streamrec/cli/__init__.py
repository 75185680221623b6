"""The ``streamrec`` command line. App folders add sub-commands through the plugin registry."""

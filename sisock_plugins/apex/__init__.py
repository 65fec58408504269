"""The apex plugin: serves the APEX weather archive (``<data>/targets/*.dat``) of the ACT site.

See :mod:`sisock_plugins.apex.plugin` for the options, :mod:`sisock_plugins.apex.parser`
for the file names and format, and :mod:`sisock_core.textarchive` for the
file index and cache (shared building blocks of text-file archives).
"""

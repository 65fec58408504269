"""The radiometer plugin: serves the UCSC radiometer's PWV files (``<data>/PWV/``) of the ACT site.

See :mod:`sisock_plugins.radiometer.plugin` for the options and
:mod:`sisock_plugins.radiometer.parser` for the file names and format.
"""

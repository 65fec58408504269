"""The weather plugin: serves text-file weather archives (one ``<field>.dat`` file per field).

Ships an example data set (synthetic APEX site weather, July 2017). See
:mod:`sisock_plugins.weather.plugin` for the options and
:mod:`sisock_plugins.weather.parser` for the file format.
"""

"""The sensors plugin: this machine's hardware sensors (lm-sensors or hwmon), live.

See :mod:`sisock_plugins.sensors.plugin` for the options and
:mod:`sisock_plugins.sensors.readers` for the sources and formats read.
"""

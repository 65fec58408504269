"""sisock core: a plugin framework that serves housekeeping time series over WAMP.

Plugin authors import two things from here::

    from sisock_core import hookimpl, Field, Timeline

and implement the hooks documented in :mod:`sisock_core.hookspecs`.
"""

from importlib.metadata import PackageNotFoundError, version

import pluggy

from sisock_core.model import Command, CommandContext, Field, NodeContext, PluginSpec, Service, Timeline

PROJECT_NAME = "sisock"

#: Marker for hook implementations: decorate plugin functions with ``@hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

try:
    __version__ = version("sisock")
except PackageNotFoundError:  # running from a checkout without install
    __version__ = "0+unknown"

__all__ = ["hookimpl", "Command", "CommandContext", "Field", "Timeline", "PluginSpec", "NodeContext",
           "Service", "__version__"]

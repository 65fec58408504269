"""Site configuration: ``site/nodes.toml`` parsed into attrs classes with cattrs.

The site file is TOML::

    state_dir = "/var/lib/sisock"      # optional
    log_level = "info"                 # optional (env LOGLEVEL)

    [router]                           # optional, see RouterConfig
    tls_port = 8080

    [nodes.apex_archive]               # one table per data node
    plugin = "weather"                 # required: an installed plugin
    description = "APEX weather"       # optional: default from the plugin
    enabled = true                     # optional
    max_points = 0                     # optional: 0 or absent means no cap
    data_dir = "/data/apex"            # any other key is an option of the plugin

:func:`load_config` reads it, checks everything at once and raises one
:class:`ConfigError` listing every problem, one line each::

    site.toml: router.tls_prot: unknown key (did you mean 'tls_port'?)
    site.toml: nodes.x.plugin: missing required key

The environment variables of the original sisock containers (``CROSSBAR_HOST``,
``CROSSBAR_TLS_PORT``, ``CROSSBAR_OCS_PORT``, ``WAMP_USER``, ``PORT``, ``LOGLEVEL``,
``MAX_POINTS``) and ``SISOCK_STATE_DIR`` override the file, so an existing deployment
carries over. A plugin's :attr:`~sisock_core.model.PluginSpec.env` maps further
variables to its options; a variable mapped to ``"name"`` or ``"description"`` (when
the options class has no field of that name) renames or describes the node instead.
Empty variables count as unset.

Only the node tables a process needs are read (``only_nodes``/``only_plugins`` of
:func:`load_config`): loading the file imports no plugin unless asked to.

The modules: :mod:`~sisock_core.config.schema` (the tables as attrs classes),
:mod:`~sisock_core.config.default_site` (the embedded site),
:mod:`~sisock_core.config.problems` (:class:`ConfigError`, problem lines),
:mod:`~sisock_core.config.converter` (the strict cattrs converters),
:mod:`~sisock_core.config.validation` (cattrs errors to key paths),
:mod:`~sisock_core.config.environment` (the legacy environment variables),
:mod:`~sisock_core.config.loader` (the load) and :mod:`~sisock_core.config.describe`.
Pure code: no Twisted here, so it is tested with plain pytest.
"""

from sisock_core.config.default_site import DEFAULT_SITE_TOML, EMBEDDED_SOURCE
from sisock_core.config.describe import describe_config
from sisock_core.config.loader import PluginLoader, load_config, load_config_text
from sisock_core.config.problems import ConfigError, format_key_path, format_problem
from sisock_core.config.schema import HttpConfig, HubConfig, NodeConfig, NodeCore, RouterConfig
from sisock_core.config.schema import SiteConfig, default_state_dir
from sisock_core.config.converter import make_converter, make_env_converter

__all__ = [
    "DEFAULT_SITE_TOML", "EMBEDDED_SOURCE", "ConfigError", "HttpConfig", "HubConfig", "NodeConfig",
    "NodeCore", "PluginLoader", "RouterConfig", "SiteConfig", "default_state_dir", "describe_config",
    "format_key_path", "format_problem", "load_config", "load_config_text", "make_converter",
    "make_env_converter",
]

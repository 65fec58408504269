"""The site run when no site file is given (``site/nodes.toml`` holds the same text)."""

from __future__ import annotations

#: Source name of the built-in configuration (``load_config(None)``).
EMBEDDED_SOURCE = "<embedded defaults>"

#: The site used when no file is given; ``site/nodes.toml`` holds the same text.
DEFAULT_SITE_TOML = """\
# sisock site configuration.
#
# Run everything on this machine with `sisock up site/nodes.toml`; check this file with
# `sisock check site/nodes.toml`. Every key is optional except each node's `plugin`.
# The commented values are the defaults. Relative paths are relative to this file.
# The environment variables of the original sisock containers override this file
# (CROSSBAR_HOST, CROSSBAR_TLS_PORT, CROSSBAR_OCS_PORT, WAMP_USER, PORT, LOGLEVEL,
# MAX_POINTS), and so does SISOCK_STATE_DIR.

# Generated files (TLS certificate, router config). Default: $SISOCK_STATE_DIR,
# else $XDG_STATE_HOME/sisock (~/.local/state/sisock).
# state_dir = "state"

# One of debug, info, warn, error, critical (env LOGLEVEL).
# log_level = "info"

# Where the core keeps the summaries it computes for archive nodes whose plugin writes
# none (long ranges): a database URL (sqlite:///path, a relative file being relative to
# this file, or mysql://user@host/db), e.g. a MariaDB shared by the nodes of several
# machines. Default: one SQLite file per node under state_dir/summaries.
# summaries_db = "mysql://sisock@db.example.org/sisock_summaries"

# The crossbar WAMP router every component connects to.
# [router]
# start = true              # run it here; false to use a router elsewhere
# host = "127.0.0.1"        # where components connect (env CROSSBAR_HOST; a remote
#                           # host there also turns off start for router and hub)
# listen = "127.0.0.1"      # interface of the TLS WebSocket
# tls_port = 8080           # TLS WebSocket with WAMP-CRA (env CROSSBAR_TLS_PORT)
# ocs_port = 8001           # plain WebSocket for OCS agents (env CROSSBAR_OCS_PORT)
# path = "/ws"              # URL path of the WebSocket, as the original's (env CROSSBAR_PATH)
# ocs_listen = "127.0.0.1"  # keep it on loopback: anyone reaching it may publish
# allow_public_ocs = false  # true lets ocs_listen be another interface (trusted networks)
# allow_legacy_ocs_nodes = false  # migration only: sisock 0.2 data nodes on the OCS port
#                           # may register and join the hub (ocs_listen must be loopback)
# realm = "test_realm"
# tls_cert = "server_cert.pem"  # default: generated under state_dir/tls
# tls_key = "server_key.pem"
# ca_cert = "ca.pem"        # what clients trust; default: tls_cert
# wamp_user = "server"      # WAMP-CRA identity of nodes and hub (env WAMP_USER)
# secrets_file = "secrets.toml"  # WAMP-CRA secrets

# The registry of live data nodes.
# [hub]
# start = true

# The Grafana HTTP bridge (simple JSON datasource).
# [http]
# start = true
# listen = "127.0.0.1"      # another interface requires username and a password
# port = 5000               # env PORT
# username = "grafana"      # basic auth (env SISOCK_HTTP_USER)
# password_file = "http_password"  # mode 600; env SISOCK_HTTP_PASSWORD wins
# max_targets = 1000        # cap on /search, /metrics, /variable lists
# query_timeout = 25.0      # seconds to wait for a node's answer
# cors_origins = ["*"]      # origins allowed for browser-mode Grafana
# gzip = false              # compress answers (helps only over slow links)
# max_connections = 512     # open at most (and below the open-file limit)
# request_deadline = 10.0   # seconds to send a request's headers and body
# max_client_requests = 64  # answered at once per client address; more get a 429
# max_points = 20000        # points per series at most (maxDataPoints above: a notice)

# Data nodes: one [nodes.<name>] table each. The name (lowercase letters, digits,
# '_', starting with a letter) is the node's name on the wire. Keys:
#   plugin       required: an installed plugin (`sisock plugins` lists them)
#   description  default: the plugin's own description
#   enabled      default: true
#   max_points   cap on points returned per field; 0 or absent: no cap (env MAX_POINTS)
#   process      the OS process serving it: absent, the one shared by the nodes of its
#                plugin; "own", a process of its own; another name, that named group
# Every other key is an option of the plugin.

# Weather station archive, served from the example data bundled with the plugin.
[nodes.apex_archive]
plugin = "weather"
"""

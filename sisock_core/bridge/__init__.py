"""The HTTP bridge: a Grafana data source over sisock's WAMP data nodes.

It speaks both Grafana JSON data-source plugins (SimpleJSON and simPod's JSON data
source) on ``http://127.0.0.1:5000/`` by default; targets are ``node::field``. A browser
there gets a quick-look page; ``/api/data`` serves scripts and Grafana's Infinity.

* :mod:`~sisock_core.bridge.grafana` - request parsing and answer building (pure);
* :mod:`~sisock_core.bridge.variables` - template variables as Grafana interpolates them (pure);
* :mod:`~sisock_core.bridge.openapi` - the OpenAPI document, from a registry of routes;
* :mod:`~sisock_core.bridge.catalog` - the field cache (pure);
* :mod:`~sisock_core.bridge.auth` - basic auth and CORS (pure);
* :mod:`~sisock_core.bridge.service` - the WAMP session, field cache upkeep, queries;
* :mod:`~sisock_core.bridge.app` - the Klein routes and :func:`run_bridge`;
* :mod:`~sisock_core.bridge.api` - the plain data API ``/api/*`` (pure);
* :mod:`~sisock_core.bridge.live` - ``/api/live``: the nodes' ``.live`` pushes as SSE;
* :mod:`~sisock_core.bridge.web` - the quick-look page, its files and ``/api/*`` handlers.

Run it alone with ``sisock http``; ``sisock up`` starts it after the hub.
"""

"""The short summary of a site that ``sisock check`` prints."""

from __future__ import annotations

from sisock_core.config.schema import SiteConfig


def describe_config(config: SiteConfig) -> str:
    """A short human summary of ``config`` (printed by ``sisock check``)."""
    r, hub, http = config.router, config.hub, config.http
    where = "started here" if r.start else "not started here"
    lines = [
        f"config:    {config.path}",
        f"state dir: {config.state_dir}",
        f"log level: {config.log_level}",
        f"router:    wss://{r.host}:{r.tls_port}{r.path} realm {r.realm!r} as {r.wamp_user!r} ({where}"
        + (f", listening on {r.listen}:{r.tls_port}" if r.start else "")
        + f"); OCS ws://{r.ocs_listen}:{r.ocs_port}"
        + (" (legacy data nodes may register there: router.allow_legacy_ocs_nodes; turn it off "
           "once they are replaced)" if r.allow_legacy_ocs_nodes else ""),
        f"hub:       {'started here' if hub.start else 'not started here'}",
        f"http:      "
        + (f"http://{http.listen}:{http.port}" if http.start else "not started here"),
    ]
    enabled = [n for n in config.nodes.values() if n.enabled]
    lines.append(f"nodes:     {len(enabled)} enabled of {len(config.nodes)}")
    width = max((len(n) for n in config.nodes), default=0)
    pwidth = max((len(n.plugin) for n in config.nodes.values()), default=0)
    for node in config.nodes.values():
        extra = []
        if not node.enabled:
            extra.append("disabled")
        if node.max_points is not None:
            extra.append(f"max_points {node.max_points}")
        suffix = f" [{', '.join(extra)}]" if extra else ""
        lines.append(f"  {node.name:<{width}}  {node.plugin:<{pwidth}}  {node.description}{suffix}")
    return "\n".join(lines)

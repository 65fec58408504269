"""Hook specifications: the whole contract between the core and a plugin.

A plugin is a module (or object) with functions decorated by
``sisock_core.hookimpl``, found through the ``sisock.plugins`` entry-point group.
Each data node wraps exactly one plugin, so ``firstresult`` hooks are answered by
that plugin. Implementations may accept fewer arguments than the spec names, so
specs can grow without breaking plugins.

Hooks are plain synchronous Python. The core calls ``list_fields`` and
``read_range`` in a worker thread, never on the reactor thread, so they may block
on disks and databases. Times given to hooks are absolute UNIX times (the core has
already resolved sisock's "t <= 0 means now + t" rule).

Lifecycle: ``sisock_plugin_spec`` (at config load) → ``node_start`` → any number of
``list_fields`` / ``read_range`` calls, and ``subscribe`` once for live plugins →
``node_stop``. Besides its nodes, a plugin may add ``sisock`` commands
(``plugin_commands``) and background services that ``sisock up`` runs beside its nodes
(``plugin_services``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import pluggy

from sisock_core.model import Command, Field, NodeContext, PluginSpec, Service, Timeline

if TYPE_CHECKING:
    from sisock_core.config import NodeConfig, SiteConfig

hookspec = pluggy.HookspecMarker("sisock")

# -- declaration --------------------------------------------------------------


@hookspec(firstresult=True)
def sisock_plugin_spec() -> PluginSpec:
    """Declare the plugin: its options class, default node name and description.

    Required. Called when the site config is loaded, before any node starts; the
    options class is used to structure and validate the plugin's ``[nodes.<name>]``
    table.
    """


@hookspec
def plugin_commands() -> Iterable[Command]:
    """Add ``sisock`` subcommands: return :class:`~sisock_core.model.Command` values.

    Optional. Called when ``sisock`` is run with a command that is not the core's (or
    with ``--help``), so the plugin is imported only then. Each command gets
    ``-c/--config``, ``--log-format`` and ``--help`` from the core; its ``run(args,
    context)`` gets the parsed arguments and a
    :class:`~sisock_core.model.CommandContext` (loading the site, running the reactor).
    """


@hookspec
def plugin_services(site: SiteConfig, nodes: Sequence[NodeConfig]) -> Iterable[Service]:
    """Declare background services to run beside this plugin's ``nodes``.

    Optional. Called by ``sisock up`` and ``sisock systemd`` once per plugin that has
    enabled nodes in ``site`` (``nodes``: those nodes, options structured). Return
    :class:`~sisock_core.model.Service` values (or nothing): each runs one of the
    plugin's commands (``plugin_commands``) as a supervised child, with readiness,
    restart with backoff and its own log name, or as its own systemd unit.
    """


# -- lifecycle ----------------------------------------------------------------


@hookspec
def node_start(node: NodeContext) -> None:
    """Prepare to serve ``node`` (open files, check directories, fill ``node.state``).

    Optional. Called once in the node's process before it registers on the router.
    Raise an exception with a clear message (e.g. "data directory /x does not
    exist") to refuse to start; the message is shown to the operator.
    """


@hookspec
def node_stop(node: NodeContext) -> None:
    """Release what ``node_start`` acquired. Optional; called once at shutdown."""


# -- data ----------------------------------------------------------------------


@hookspec(firstresult=True)
def list_fields(node: NodeContext, start: float, end: float) -> Iterable[Field] | None:
    """Return the fields that have at least one sample in ``[start, end)``.

    Fields without samples in the range may be included. Return ``None`` to let the
    core answer from its live cache (plugins implementing ``subscribe`` usually do).
    Called in a worker thread.
    """


@hookspec(firstresult=True)
def read_range(
    node: NodeContext, fields: Sequence[str], start: float, end: float
) -> Mapping[str, Timeline] | None:
    """Return the samples of ``fields`` in ``[start, end)``, keyed by timeline name.

    Unknown fields are simply left out (the core answers them with empty arrays).
    Return full-resolution data: the core trims to the range and decimates
    (``min_stride``, ``MAX_POINTS``, Grafana's ``maxDataPoints``); plugins never
    decimate. Return ``None`` to let the core answer from its live cache. Called in
    a worker thread; may block.
    """


@hookspec(firstresult=True)
def summary_store(node: NodeContext) -> str | None:
    """Return the URL of the database where the plugin writes its own summaries, or None.

    Optional; first result. Summaries let the core answer long, decimated ranges from
    per-bucket minima, maxima, first/last samples, sums and counts at coarser tiers
    instead of reading every raw sample (see ``docs/writing-plugins.md``). A plugin that
    can compute them cheaply while it indexes its data (e.g. in the transaction that
    indexes a file) writes them with :class:`sisock_core.summarystore.SummaryWriter` into
    a database (``sqlite:///path`` or ``mysql://...``) and returns its URL here; its
    series are then taken as complete. Without this hook (or with None) the core
    computes them itself from ``read_range`` answers for data before each timeline's
    ``finalized_until``, into ``<state_dir>/summaries/<node>.sqlite``. Plugins that only
    publish live (``subscribe`` without ``read_range``) get no summaries. Called once
    after ``node_start``.
    """


@hookspec(firstresult=True)
def resolve_fields(node: NodeContext, fields: Sequence[str]) -> Mapping[str, str] | None:
    """Map the field names a consumer asked for to the names the plugin declares.

    Optional; first result. Only needed by a plugin that accepts other spellings of its
    field names in ``read_range`` (e.g. lower-cased or shortened names): the core looks up summaries (and, on a node assembling an
    archive and a live feed, live samples) under the declared name, so an alias is
    answered exactly like its field. Leave out names that are not aliases (or
    unknown). Called in a worker thread.
    """


@hookspec(firstresult=True)
def subscribe(
    node: NodeContext,
    publish: Callable[..., Any],
) -> Callable[[], None] | None:
    """Start delivering live samples; return a callable that stops delivery.

    Optional: only live plugins (reading sensors, following feeds) implement it. Called once, right
    after ``node_start``. Call ``publish(timeline, t, {field: values})`` with a batch
    of samples from any thread (it never blocks for long); optional keywords
    ``units={field: str}`` and ``descriptions={field: str}`` describe new fields.
    Fields published together share ``timeline``; values may be numbers, bools or
    strings (each field keeps its type). ``publish`` returns the problems it found
    (fields of the wrong length or type are left out, the rest is kept).

    The core keeps a bounded live cache of the last ``buffer_time`` seconds
    (default 3600; taken from the plugin's option of that name when it has one, and
    ``max_samples`` likewise caps rows per timeline) and answers
    ``get_fields``/``get_data`` from it when ``list_fields``/``read_range`` return
    ``None`` (or are not implemented). It also pushes new samples, batched about
    twice a second, to consumers on the WAMP topic
    ``org.simonsobservatory.consumer.<node>.live``: one positional argument shaped
    like a ``get_data`` answer plus the node name,
    ``{"node": str, "data": {field: [values]}, "timeline": {timeline: {"t": [times],
    "finalized_until": float}}}``.

    To receive WAMP events (OCS feeds), use :meth:`NodeContext.wamp_subscribe`.

    A plugin that also reads an archive (``read_range``) gets **timeline assembly**: each
    field is answered as one series, from the archive up to its final time (see
    ``archive_until``) and from the live cache after it (:mod:`sisock_core.assembly`).
    Publish under the archive's field and timeline names. Return ``False`` when this
    node serves no live data after all (an option left off): the core then keeps no
    live cache.
    """


@hookspec(firstresult=True)
def archive_until(node: NodeContext) -> Mapping[str, float] | None:
    """Return ``{field: time}``: the last sample the archive holds for good, per field.

    Optional; for plugins with both ``read_range`` and ``subscribe``. Field names are
    those the plugin publishes live. The core calls it in a worker thread when the node
    starts and every few seconds (a plugin may refresh there what its live handlers
    need, since they run on the reactor thread). Answers take archive samples up to
    this time and live samples after it; published samples at or before it are dropped
    (logged once). Without this hook, each timeline of the ``read_range`` answer is
    kept whole and live samples after its last one follow.
    """

"""The sensors plugin: this machine's temperatures, voltages and fans, live.

A thread reads the sensors every ``interval`` seconds (``sensors -j``, else
``sensors -u``, else ``/sys/class/hwmon``; see :mod:`sisock_plugins.sensors.readers`)
and publishes one sample per field to the core's live cache, which serves the last
``buffer_time`` seconds. Fields are named ``<chip>_<subfeature>`` as in the
original sisock node (``coretemp-isa-0000_temp2``) and share the timeline
``sensors``. Example ``site/nodes.toml`` entry::

    [nodes.sensors]
    plugin = "sensors"
    # interval = 2.5               # seconds between readings
    # buffer_time = 3600           # seconds kept (env BUFFER_TIME)

On a machine without sensors (VMs, containers) the node still runs and serves no
fields; its log says why, once, and it keeps looking every minute in case a
driver gets loaded.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import attrs
from twisted.logger import Logger

from sisock_core import PluginSpec, hookimpl
from sisock_core.livecache import DEFAULT_BUFFER_TIME, DEFAULT_MAX_SAMPLES
from sisock_core.model import NodeContext
from sisock_core.validators import positive, positive_int
from sisock_plugins.sensors.readers import NoReadings, SensorReader

log = Logger(namespace="sisock_plugins.sensors")

STATE_KEY = "sensors"
TIMELINE = "sensors"
#: Seconds between looks for sensors on a machine that has none.
NO_SENSORS_RETRY = 60.0


@attrs.frozen
class Options:
    """Options of a sensors node (its ``[nodes.<name>]`` table)."""

    #: seconds between readings (the original read every 2.5 s)
    interval: float = attrs.field(default=2.5, validator=positive)
    #: seconds of readings kept in memory (env BUFFER_TIME)
    buffer_time: float = attrs.field(default=DEFAULT_BUFFER_TIME, validator=positive)
    #: cap on readings kept, whatever the interval
    max_samples: int = attrs.field(default=DEFAULT_MAX_SAMPLES, validator=positive_int)
    #: the lm-sensors program
    command: str = attrs.field(default="sensors", validator=attrs.validators.instance_of(str))
    #: where the kernel exposes hwmon devices (read when lm-sensors gives nothing)
    hwmon_root: str = attrs.field(default="/sys/class/hwmon", validator=attrs.validators.instance_of(str))


@hookimpl
def sisock_plugin_spec() -> PluginSpec:
    return PluginSpec(
        default_node_name="sensors",
        description="The results of the UNIX 'sensors' command.",
        options=Options,
        env={"BUFFER_TIME": "buffer_time"},
    )


@hookimpl
def subscribe(node: NodeContext, publish: Callable[..., Any]) -> Callable[[], None]:
    options: Options = node.options if node.options is not None else Options()
    poller = SensorPoller(node.name, SensorReader(options.command, options.hwmon_root), publish,
                          interval=options.interval)
    node.state[STATE_KEY] = poller
    poller.start()
    return poller.stop


@hookimpl
def node_stop(node: NodeContext) -> None:
    poller = node.state.pop(STATE_KEY, None)
    if poller is not None:
        poller.stop()


class SensorPoller:
    """Reads the sensors in a thread every ``interval`` seconds and publishes them."""

    def __init__(self, node: str, reader: SensorReader, publish: Callable[..., Any], *,
                 interval: float = 2.5, retry: float = NO_SENSORS_RETRY,
                 clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self.reader = reader
        self.publish = publish
        self.interval = interval
        self.retry = max(retry, interval)
        self.clock = clock
        self.readings = 0
        self.no_sensors: str | None = None  #: why the last look found nothing (None: sensors found)
        self._reported = False
        self._source: str | None = None
        self._stop = threading.Event()
        #: Set once the first look at the sensors is over (found or not; tests wait on it).
        self.looked = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sisock-sensors-{node}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.reader.timeout + 5)

    def poll_once(self) -> bool:
        """Read and publish once; return whether there were readings."""
        t = self.clock()
        try:
            readings = self.reader.read()
        except NoReadings as exc:
            self.no_sensors = str(exc)
            if not self._reported:
                self._reported = True
                log.warn("{node}: no sensors on this machine, serving no sensor fields "
                         "(looking again every {retry:g}s): {why}",
                         node=self.node, retry=self.retry, why=self.no_sensors)
            return False
        if readings.source != self._source:
            self._source = readings.source
            log.info("{node}: reading {n} sensors with {source}", node=self.node,
                     n=len(readings.values), source=readings.source)
        self.no_sensors = None
        problems = self.publish(TIMELINE, [t], {k: [v] for k, v in readings.values.items()},
                                units=readings.units, descriptions=readings.labels)
        for p in problems or ():
            log.warn("{node}: {problem}", node=self.node, problem=p)
        self.readings += 1
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                found = self.poll_once()
            except Exception:
                log.failure("{node}: reading the sensors failed", node=self.node)
                found = False
            self.looked.set()
            self._stop.wait(self.interval if found else self.retry)

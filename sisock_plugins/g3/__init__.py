"""The g3 plugin: OCS housekeeping ``.g3`` archives, indexed in a database.

Modules: :mod:`~sisock_plugins.g3.plugin` (the node's hooks and options),
:mod:`~sisock_plugins.g3.reader` (get_fields/get_data from the index and files),
:mod:`~sisock_plugins.g3.index` (the database: schema, SQLite and MariaDB),
:mod:`~sisock_plugins.g3.scan` (reading one file's frames with so3g/spt3g),
:mod:`~sisock_plugins.g3.scanner` (bringing the index in step with a directory),
:mod:`~sisock_plugins.g3.service` (the scanner as a Twisted service: interval and
watchdog), :mod:`~sisock_plugins.g3.cli` (``sisock scan``).
"""

"""The datafeed plugin: live data from an OCS agent's feed, kept for an hour.

See :mod:`sisock_plugins.datafeed.plugin` for the options and
:mod:`sisock_plugins.datafeed.ocs` for the message formats accepted.
"""

"""Namespace for the plugins bundled with sisock (one subpackage per plugin)."""

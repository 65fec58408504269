"""Install a plugin for a test the way a distribution would: an entry point in the group
``sisock.plugins`` (a ``*.dist-info`` directory) under a directory put on ``PYTHONPATH``."""

from __future__ import annotations

from pathlib import Path


def install_plugin(root: Path, name: str, module: str, source: str | None = None) -> Path:
    """Make plugin ``name`` (entry point ``module``) installed under ``root``; with
    ``source``, also write ``<module>.py``. Returns ``root``."""
    if source is not None:
        (root / f"{module}.py").write_text(source)
    dist = root / f"sisock_plugin_{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: sisock-plugin-{name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[sisock.plugins]\n{name} = {module}\n")
    return root

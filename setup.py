"""Build of the optional C extension; the project's metadata is in pyproject.toml.

``sisock_core._buckets`` speeds up the summaries a scanner computes while indexing. It is
optional: without a C compiler the install goes on, and ``sisock_core.summaries`` uses
numpy for the same numbers.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sisock_core._buckets", ["sisock_core/_buckets.c"], optional=True)])

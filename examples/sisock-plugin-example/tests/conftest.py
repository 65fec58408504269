# Enable sisock's test harness (the sisock_node and sisock_site fixtures).
# Equivalent: run pytest with -p sisock_core.testing.
pytest_plugins = ["sisock_core.testing"]

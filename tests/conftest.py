"""Fixtures shared by the whole suite: the provider twins' pytest plugins."""

pytest_plugins = [
    "tests.twins.braket_plugin",
    "tests.twins.ibm_plugin",
]

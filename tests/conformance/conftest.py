"""Shared pytest set-up for the conformance suite (run by ops/conformance.sh)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "last: changes the server's state for everyone; runs after every other test")


def pytest_collection_modifyitems(items):
    # A stable sort: the order stays as collected, except that tests marked `last` move to the end.
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)

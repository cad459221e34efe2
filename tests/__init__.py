"""The test suite (a package, so tests/support imports as tests.support from anywhere in the
repository: the tests, bench/ and tests/e2e alike)."""

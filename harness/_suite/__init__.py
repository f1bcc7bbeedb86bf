"""The built-in suite inside a built wheel: the repository's `scenarios/`, `loadtests/` and
`manifests/`, mapped here by pyproject.toml. Empty in a checkout; find files through
`harness.suite`, which answers for both."""

"""The built-in scenario suite. A package, so that its modules import under their own name
(`harness._suite.scenarios.test_*` when installed) and never clash with a user's tests."""

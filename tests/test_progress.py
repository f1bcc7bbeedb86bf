"""Progress lines: stderr outside pytest, live in the terminal under the plugin."""

import subprocess
import sys

import pytest

from harness.progress import route_to, say, step

# A session fixture doing "long work", as the cluster and image fixtures do.
SLOW_SESSION = """
    import pytest
    from harness.progress import say, step

    @pytest.fixture(scope="session")
    def stand_in_cluster():
        say("no cluster cached: building one")
        with step("booting the stand-in cluster"):
            pass
        return "stand-in"
"""


def live(text: str) -> str:
    """An fnmatch pattern for one progress line ("[" starts a character class there)."""
    return f"[[]harness] {text}"


def run_inner(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The plugin by its entry point name, as an installed kube-harness is loaded; `-p
    harness.plugin` would register the module a second time."""
    return pytester.runpytest_subprocess("-p", "kube_harness", "-p", "no:cacheprovider", *args)


def test_lines_go_through_the_route_and_restore_the_one_before() -> None:
    outer: list[str] = []
    inner: list[str] = []
    restore_outer = route_to(outer.append)
    try:
        restore_inner = route_to(inner.append)
        say("a note")
        with pytest.raises(ValueError), step("a step that breaks"):
            raise ValueError
        restore_inner()
        say("back outside")
    finally:
        restore_outer()
    assert inner[0] == "[harness] a note"
    assert inner[1] == "[harness] a step that breaks ..."
    assert inner[2].startswith("[harness] a step that breaks: failed after ")
    assert outer == ["[harness] back outside"]


def test_without_pytest_the_lines_go_to_stderr() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from harness.progress import say, step\n"
            "say('from the command line')\n"
            "with step('a command-line step'):\n"
            "    pass\n",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[:2] == ["[harness] from the command line", "[harness] a command-line step ..."]
    assert lines[2].startswith("[harness] a command-line step: done in ")


@pytest.mark.slow
def test_a_passing_run_shows_the_fixtures_progress_live(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SLOW_SESSION)
    pytester.makepyfile("""
        def test_one(stand_in_cluster):
            pass

        def test_two(stand_in_cluster):
            pass
    """)
    result = run_inner(pytester)  # default --capture=fd: a passing test's output never shows
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            live("no cluster cached: building one"),
            live("booting the stand-in cluster ..."),
            live("booting the stand-in cluster: done in *s"),
            "*2 passed*",
        ]
    )
    out = result.stdout.str()
    assert out.count("booting the stand-in cluster ...") == 1
    assert "Captured" not in out
    assert "[harness]" not in result.stderr.str()


@pytest.mark.slow
def test_a_failing_test_shows_its_own_output_and_progress_only_live(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SLOW_SESSION)
    pytester.makepyfile("""
        from harness.progress import say

        def test_fails(stand_in_cluster):
            print("the test's own output")
            say("said inside the failing test")
            assert False
    """)
    result = run_inner(pytester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    captured = out.split("Captured stdout call", 1)[1]
    assert "the test's own output" in captured
    assert "[harness]" not in captured
    assert out.count("[harness] said inside the failing test") == 1
    assert "Captured stderr" not in out


@pytest.mark.slow
def test_qq_shows_the_steps_but_not_the_notes(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SLOW_SESSION)
    pytester.makepyfile("def test_one(stand_in_cluster): pass")
    result = run_inner(pytester, "-qq")
    assert result.ret == pytest.ExitCode.OK  # -qq prints no summary for assert_outcomes
    result.stdout.fnmatch_lines(
        [live("booting the stand-in cluster ..."), live("booting the stand-in cluster: done*")]
    )
    assert "building one" not in result.stdout.str() + result.stderr.str()


def test_a_test_reading_its_own_stderr_still_gets_the_lines(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        from harness.progress import say

        def test_reads(capsys):
            say("for the test to read")
            assert capsys.readouterr().err == "[harness] for the test to read\\n"
    """)
    run_inner(pytester).assert_outcomes(passed=1)


@pytest.mark.slow
def test_xdist_workers_show_their_progress_tagged_with_their_id(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SLOW_SESSION)
    # Two files, --dist loadfile: each worker runs one, so both build the session fixture.
    pytester.makepyfile(
        test_a="def test_a(stand_in_cluster): pass",
        test_b="def test_b(stand_in_cluster): pass",
    )
    result = run_inner(pytester, "-p", "xdist", "-n", "2", "--dist", "loadfile")
    result.assert_outcomes(passed=2)
    # A worker's stderr is the controller's: the terminal, or here the captured stderr.
    err = result.stderr.str()
    for worker in ("gw0", "gw1"):
        assert f"[{worker}] [harness] booting the stand-in cluster ..." in err
        assert f"[{worker}] [harness] booting the stand-in cluster: done in " in err

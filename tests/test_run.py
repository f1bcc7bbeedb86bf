import pytest

from harness import run as runs
from harness.errors import InvalidConfiguration
from harness.namespaces import namespace_name
from harness.run import RUN_ID_ENV, Run, new_run_id


def test_a_generated_run_id_names_a_folder_and_namespaces(tmp_path):
    run = Run.from_environment(tmp_path)
    assert run.directory.parent == tmp_path.resolve()
    assert len(namespace_name(run.run_id)) <= 63


def test_a_parent_process_run_id_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv(RUN_ID_ENV, "nightly-20261202")
    assert Run.from_environment(tmp_path).run_id == "nightly-20261202"


@pytest.mark.parametrize(
    "run_id",
    ["..", "../../x", "a/b", "Nightly", "-x", "x-", "a b", "x" * 41, "a.b"],
)
def test_a_run_id_that_could_leave_the_reports_folder_or_break_a_namespace_is_refused(
    tmp_path, run_id
):
    """A run id names reports/<id>/ and a cache folder deleted at the end of the run: `..`
    there would delete the whole cache."""
    with pytest.raises(InvalidConfiguration, match="is not usable") as info:
        Run.from_environment(tmp_path, run_id)
    assert "lowercase letters, digits and '-'" in info.value.fix
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_test_folders_are_file_system_safe():
    name = runs.test_dir_name("scenarios/test_a.py::test_b[x/y]")
    assert name == "scenarios.test_a.py__test_b_x.y"
    assert new_run_id(0).startswith("19700101-000000-")

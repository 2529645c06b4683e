"""The package reaches Dagster through its public names only (``import dagster as dg``): a private
module (``dagster._core...``) can move or change in any release, and a public name exists for most
of what the package needs. The few without one are listed here, each with its reason."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "curation_assets"
# an import, a `python -m` target or a patched attribute: anything that names a private module
PRIVATE = re.compile(r"\bdagster\._[A-Za-z0-9_.]*")

# (file under the package, private name): what Dagster 1.13.27 does not export
NO_PUBLIC_NAME = {
    # the type of dg.AssetCheckEvaluation's target_materialization_data (which materialisation a
    # check evaluated), constructed by the writer for each video's checks
    ("defs/curation/checks.py", "dagster._core.definitions.asset_checks.asset_check_evaluation"),
}


def private_names(package: Path) -> set[tuple[str, str]]:
    return {(path.relative_to(package).as_posix(), name)
            for path in package.rglob("*.py") for name in PRIVATE.findall(path.read_text(encoding="utf-8"))}


def test_the_package_names_no_private_dagster_module_where_a_public_name_exists():
    found = private_names(PACKAGE)
    assert found - NO_PUBLIC_NAME == set(), "use the public name (dg.X) instead"
    # an exception that no longer applies is removed, so the list stays the truth
    assert NO_PUBLIC_NAME - found == set()


def test_the_scan_finds_an_import_a_module_run_and_a_patched_attribute(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.py").write_text("from dagster._core.events import DagsterEventType\nimport dagster as dg\n")
    (tmp_path / "b.py").write_text('ARGS = ["-m", "dagster._daemon", "run"]\nimport dagster._utils.x as y\n')
    (tmp_path / "c.py").write_text("import dagster as dg\nKIND = dg.DagsterEventType.ASSET_MATERIALIZATION\n")
    assert private_names(tmp_path) == {("sub/a.py", "dagster._core.events"), ("b.py", "dagster._daemon"),
                                       ("b.py", "dagster._utils.x")}

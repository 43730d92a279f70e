"""Packaging promises: a dependency-free import, and extras that add up."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_importing_depot_loads_no_backend_and_no_optional_library() -> None:
    code = (
        "import sys, depot, depot.manager, depot.io.utils, depot.utils\n"
        "heavy = {'boto3', 'pymongo', 'gridfs', 'google', 'sqlalchemy', 'ming', 'PIL',"
        " 'pytest', 'depot.io.local', 'depot.io.memory', 'depot.testing'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert out.strip() == "[]"


def test_depot_testing_without_pytest_names_the_test_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['pytest'] = None  # as if it were not installed\n"
        "try:\n"
        "    import depot.testing\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert out.strip() == (
        "depot.testing needs the 'pytest' package; install the 'test' extra: "
        "pip install 'depot-storage[test]'."
    )


def test_all_extra_is_the_union_of_the_others() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    extras = {name: set(value.split()) for name, value in config["options.extras_require"].items()}
    expected = {
        "s3",
        "gridfs",
        "gcs",
        "sqlalchemy",
        "sql",
        "ming",
        "alembic",
        "images",
        "cli",
        "asgi",
        "fastapi",
        "web",
        "all",
        "test",
        "docs",
    }
    assert set(extras) == expected
    tooling = ("all", "test", "docs")
    union = set().union(*(reqs for name, reqs in extras.items() if name not in tooling))
    assert extras["all"] == union


def test_docs_extra_installs_what_the_api_reference_imports() -> None:
    """``pip install '.[docs]'`` is enough to build the docs, as Read the Docs does."""
    from depot._settings import EXTRAS

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    extras = {name: set(value.split()) for name, value in config["options.extras_require"].items()}
    documented = {
        module if directive == "module" else module.rpartition(".")[0]
        for page in (REPO / "docs").glob("*.rst")
        for directive, module in re.findall(
            r"^\.\. auto(module|class):: (\S+)", page.read_text(), flags=re.MULTILINE
        )
    }
    needed = {EXTRAS[module] for module in documented if module in EXTRAS}
    assert {"s3", "gcs", "gridfs", "sqlalchemy", "ming"} <= needed
    # depot.testing needs pytest alone of the 'test' extra, which also holds
    # the tools and servers of depot's own suite.
    imported = {"test": {req for req in extras["test"] if req.startswith("pytest>")}}
    assert imported["test"]
    for extra in needed:
        wanted = imported.get(extra, extras[extra])
        assert wanted <= extras["docs"], f"the docs extra lacks the {extra!r} extra's"

"""The package as pip builds it: a wheel holds every file the server and the demo read at
run time (modules, the built SDK and its language packs, Lua scripts, templates, styles), and
building it prints no setuptools warning (`make demo` installs the package the same way)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers import ROOT, scaled

PACKAGES = {"seatguard": ROOT / "backend" / "seatguard", "demo_site": ROOT / "demo_site"}
PROJECT_FILES = ("pyproject.toml", "README.md")


def source_files() -> set[str]:
    """The files of both packages on disk, as a wheel names them (no byte code)."""
    return {
        f"{name}/{path.relative_to(root).as_posix()}"
        for name, root in PACKAGES.items()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def copy_project(to: Path) -> None:
    """What a build reads, copied: pip builds in the tree it is given and leaves `build/`
    there, whose stale files would reach later wheels."""
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, to / name)
    ignore = shutil.ignore_patterns("__pycache__")
    for root in PACKAGES.values():
        shutil.copytree(root, to / root.relative_to(ROOT), ignore=ignore)


def test_the_wheel_holds_every_file_and_the_build_is_quiet(tmp_path: Path) -> None:
    project, wheels = tmp_path / "project", tmp_path / "wheels"
    project.mkdir()
    copy_project(project)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(project), "--no-deps", "-w", str(wheels)],
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )
    assert built.returncode == 0, built.stderr
    output = built.stdout + built.stderr
    # Setuptools' warnings are categories ("SetuptoolsDeprecationWarning: ..."); pip's own
    # notes about the machine's indexes ("WARNING: ...") are not the package's.
    assert "Warning:" not in output, output
    (wheel,) = wheels.glob("seatguard-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        files = {name for name in archive.namelist() if ".dist-info/" not in name}
    expected = source_files()
    # What the server and the demo read at run time, named so that a missing build fails here.
    for needed in (
        "seatguard/static/seatguard.js",
        "seatguard/static/device.js",
        "seatguard/static/lang/fr.json",
        "seatguard/static/apidocs/swagger-ui-bundle.js",
        "seatguard/store/lua/apply.lua",
        "seatguard/db/sqlite.py",
        "seatguard/py.typed",
        "demo_site/templates/watch.html",
        "demo_site/static/acme.css",
    ):
        assert needed in expected
    assert files == expected

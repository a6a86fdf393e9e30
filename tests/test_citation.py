"""The front door's legal files: CITATION.cff is valid Citation File Format 1.2.0 and agrees with pyproject.toml,
and LICENSE names both licences and only paths that exist.

PyYAML comes with JupyterLab (jupyterlab -> jupyter-server -> jupyter-events -> pyyaml), a dependency of the course.
"""
import datetime
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CITATION = ROOT / "CITATION.cff"
LICENSE = ROOT / "LICENSE"
#: The SPDX identifiers the course is licensed under: MIT for the code, CC BY 4.0 for the prose and figures.
ALLOWED_LICENSES = {"MIT", "CC-BY-4.0"}
CC_BY_LEGAL_CODE = "https://creativecommons.org/licenses/by/4.0/legalcode"
#: The top-level keys CFF 1.2.0's schema allows (it sets additionalProperties to false).
CFF_KEYS = {"abstract", "authors", "cff-version", "commit", "contact", "date-released", "doi", "identifiers", "keywords",
            "license", "license-url", "message", "preferred-citation", "references", "repository", "repository-artifact",
            "repository-code", "title", "type", "url", "version"}


@pytest.fixture(scope="module")
def citation() -> dict:
    data = yaml.safe_load(CITATION.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "CITATION.cff must be a YAML mapping"
    return data


def test_citation_has_the_keys_cff_1_2_0_requires(citation):
    assert citation.get("cff-version") == "1.2.0", "cff-version must be the string '1.2.0' (quote it in YAML)"
    for key in ("message", "title"):
        assert isinstance(citation.get(key), str) and citation[key].strip(), f"{key} must be a non-empty string"
    authors = citation.get("authors")
    assert isinstance(authors, list) and authors, "authors must be a non-empty list"
    for author in authors:
        assert isinstance(author, dict), f"an author must be a mapping, not {author!r}"
        # A person has family-names, an entity has a name (CFF 1.2.0's person and entity).
        assert author.get("name") or author.get("family-names"), f"author {author!r} has neither name nor family-names"
    assert citation.get("type", "software") in ("software", "dataset")
    unknown = set(citation) - CFF_KEYS
    assert not unknown, f"keys CFF 1.2.0 does not define: {sorted(unknown)}"


def test_citation_licenses_are_the_courses_spdx_ids(citation):
    licenses = citation.get("license")
    licenses = [licenses] if isinstance(licenses, str) else licenses
    assert isinstance(licenses, list) and licenses, "license must be an SPDX id or a list of them"
    unknown = set(licenses) - ALLOWED_LICENSES
    assert not unknown, f"license ids {sorted(unknown)} are not among {sorted(ALLOWED_LICENSES)}"
    assert len(set(licenses)) == len(licenses), "a license is listed twice"


def test_citation_version_is_the_projects(citation):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert str(citation.get("version")) == project["version"], \
        f"CITATION.cff says version {citation.get('version')!r}, pyproject.toml {project['version']!r}"


def test_citation_date_released_is_an_iso_date(citation):
    value = citation.get("date-released")
    # Quoted, so that YAML keeps it a string: CFF's schema wants a string, and PyYAML turns a bare date into a date.
    assert isinstance(value, str), f"date-released must be a quoted string, not {type(value).__name__}"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value), f"date-released {value!r} is not YYYY-MM-DD"
    datetime.date.fromisoformat(value)  # a real calendar date: raises on 2026-02-30


def _mit_paths(text: str) -> list[str]:
    """The paths LICENSE lists under "The MIT licence covers the code:": the first word of each indented line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("The MIT licence covers"))
    paths = []
    for line in lines[start + 1:]:
        if not line.strip():
            if paths:
                break
            continue
        if not line.startswith(" "):
            break
        paths.append(line.split()[0])
    return paths


def test_license_names_both_licences():
    text = LICENSE.read_text(encoding="utf-8")
    assert "MIT License" in text and "Permission is hereby granted, free of charge" in text, "the MIT text is missing"
    assert "CC BY 4.0" in text and "Creative Commons" in text
    assert CC_BY_LEGAL_CODE in text, "link CC BY 4.0's legal code"
    assert "The VAE course authors" in text


def test_every_path_the_mit_licence_covers_exists():
    paths = _mit_paths(LICENSE.read_text(encoding="utf-8"))
    assert "vae_lib/" in paths and "notebooks/" in paths, f"LICENSE's MIT list looks wrong: {paths}"
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"LICENSE says the MIT licence covers {missing}, which do not exist"


def test_the_textbook_scripts_licence_notice_is_kept():
    if (ROOT / "textbook" / "vae.py").exists():
        text = LICENSE.read_text(encoding="utf-8")
        assert "textbook/vae.py" in text and "BSD 3-Clause License" in text and "Pytorch contributors" in text

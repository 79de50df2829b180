"""The spec in docs/ stays true: every section the code cites exists, every function and test
the spec names exists."""

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
METHOD = (REPO / "docs" / "method.md").read_text()
HEADINGS = {re.sub(r"^[0-9]+\. ", "", h).strip() for h in re.findall(r"^#+ (.+)$", METHOD, re.M)}


def _code_files():
    for folder in ("src", "scripts", "workflow", "benchmarks"):
        yield from (p for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".smk", ".yaml"))


def test_every_method_section_the_code_cites_exists():
    """Code cites `method.md: Name, Name` (YAML: `method.md - Name`, where ': ' is syntax)."""
    cited, missing = 0, set()
    for path in _code_files():
        text = path.read_text()
        for match in re.finditer(r"method[.]md(?::| -) ([^\n]+)", text):
            for piece in match.group(1).split(", "):
                if not piece[:1].isupper():
                    break  # the sentence goes on
                cited += 1
                name = re.split(r"[)'.:;]", piece)[0].strip()
                if not any(h.startswith(name) for h in HEADINGS):
                    missing.add(f"{path.name}: {piece[:30]}")
    assert cited > 20, "the code cites no section"
    assert not missing, f"cited sections missing from docs/method.md: {sorted(missing)}"


def test_every_function_the_spec_names_exists():
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    keys = {s: set(v.get("properties", {})) for s, v in schema["properties"].items()}
    named = set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)*)\.([A-Za-z_]+)`", METHOD))
    checked = 0
    for module, name in named:
        if name in keys.get(module, ()):
            continue  # a config key, not a function
        try:
            mod = importlib.import_module(f"polneurons.{module}")
        except ModuleNotFoundError:
            continue
        assert hasattr(mod, name), f"docs/method.md names polneurons.{module}.{name}"
        checked += 1
    assert checked >= 15


def test_every_test_the_spec_names_exists():
    text = " ".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    defined = set(re.findall(r"def (test_\w+)", text))
    named = {name.replace("\n", "") for name in re.findall(r"`(test_[\w\n]+)`", METHOD)}
    assert named and not named - defined, sorted(named - defined)


def _tracked_text_files():
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, listed):
        path = REPO / name
        if path.is_file() and not path.is_symlink():
            try:
                yield name, path.read_text()
            except UnicodeDecodeError:
                continue  # binary


# a path of the machine the project was developed on, or its sibling checkouts: a user has none
# (each pattern split so that this file does not match itself)
MACHINE_PATHS = re.compile(
    "|".join(
        [
            "/" + r"work/",
            r"\.\./" + r"shared/",
            "/" + r"root/",
            "/" + r"tmp/(?:fresh|study|emb|ci)",
            "/" + r"home/\w+/",
        ]
    )
)
# words about how the project was developed (history belongs in no file; CHANGELOG.md says
# what changed, not who did it when); tests are left out: "session" is pytest's word there
DEVELOPMENT_HISTORY = re.compile(
    r"(?:previous|this|next|last|earlier|first|second|third|fourth|fifth|sixth)\s+"
    + "sess"
    + r"ion|\bsess"
    + r"ion\s+\d",
    re.I,
)
# this project's issue numbers; another project's tracker (a plugin's, a library's) is a citation
ISSUE_NUMBER = re.compile(r"\bissues?\s+#?\d+", re.I)
OTHER_TRACKERS = ("plugin", "upstream", "snakemake", "peft", "transformers", "torch", "github.com")


def development_history(line: str) -> bool:
    """Whether a line speaks of how the project was developed (module comment above)."""
    if DEVELOPMENT_HISTORY.search(line):
        return True
    cited = any(tracker in line.lower() for tracker in OTHER_TRACKERS)
    return bool(ISSUE_NUMBER.search(line)) and not cited


def test_the_repository_names_no_machine_path_and_no_development_history():
    found, history = [], []
    for name, text in _tracked_text_files():
        for number, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATHS.search(line):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
            if not name.startswith("tests/") and development_history(line):
                history.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not found, "machine paths:\n" + "\n".join(found)
    assert not history, "development history:\n" + "\n".join(history)


def test_the_history_patterns_catch_what_they_name():
    assert MACHINE_PATHS.search("cd " + "/" + "work/main && make run")
    assert MACHINE_PATHS.search("MIRROR=" + "../" + "shared/political_stance_data")
    assert not MACHINE_PATHS.search("MIRROR=/path/to/political_stance_data")
    assert development_history("the fifth " + "session's fix")
    assert development_history("see issue 28")
    assert not development_history("the Slurm plugin's issue #473 is open")


def _library_modules():
    import pkgutil

    import polneurons

    return [m.name for m in pkgutil.walk_packages(polneurons.__path__, "polneurons.")]


@pytest.mark.parametrize("name", _library_modules())
def test_every_library_modules_examples_hold(name):
    import doctest

    assert doctest.testmod(importlib.import_module(name)).failed == 0


# the user-facing modules whose every public function and method shows a `>>>` example
EXAMPLED_MODULES = ("runs", "kinds", "specs", "sites", "patching", "plan", "neurons")


@pytest.mark.parametrize("name", EXAMPLED_MODULES)
def test_every_public_function_of_a_user_facing_module_has_an_example(name):
    import ast

    tree = ast.parse((REPO / "src" / "polneurons" / f"{name}.py").read_text())
    missing = []
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) else []
        for item in (node, *members):
            public = isinstance(item, ast.FunctionDef | ast.ClassDef) and item.name[0] != "_"
            if public and ">>>" not in (ast.get_docstring(item) or ""):
                missing.append(item.name)
    assert not missing, f"{name}: no example in {missing}"

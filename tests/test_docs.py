"""The spec in docs/ stays true: every section the code cites exists, every function and test
the spec names exists."""

import importlib
import re
from pathlib import Path

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

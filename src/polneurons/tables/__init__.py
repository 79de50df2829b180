"""Gathering per-run outputs into the tables (CSV, Markdown, LaTeX) of method.md: Outputs, one
module per stage: `common` (what every table shares: gathering ratings and counts, why a score
is undefined, writing a table), `stance`, `neurons`, `patching`, `inhibitft`, `training` and
`claims`. Each table's logic lives here with a unit test on a small frame (tests/test_tables.py);
a rule script only reads files, calls it and writes the result."""

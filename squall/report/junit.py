"""JUnit XML for CI systems: one test case per threshold."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr


def junit_xml(verdicts: list[dict[str, Any]], name: str = "squall") -> str:
    """A JUnit XML report: one test case per threshold."""
    failures = sum(1 for v in verdicts if not v["ok"])
    cases = []
    for v in verdicts:
        case = f"  <testcase classname={quoteattr(name)} name={quoteattr(v['expr'])}"
        if v["ok"]:
            cases.append(case + "/>")
        else:
            value = "no data" if v["value"] is None else f"value {v['value']}"
            msg = quoteattr(f"{v['expr']} failed: {value}")
            cases.append(case + f">\n    <failure message={msg}/>\n  </testcase>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuite name={quoteattr(name)} tests="{len(verdicts)}" failures="{failures}">\n'
        + "\n".join(cases)
        + "\n</testsuite>\n"
    )

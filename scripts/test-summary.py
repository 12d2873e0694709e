#!/usr/bin/env python3
"""Adds up the JUnit XML files of every suite and prints one closing line for the whole run."""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(results: Path) -> int:
    passed = failed = skipped = 0
    for report in sorted(results.glob("*.xml")):
        root = ET.parse(report).getroot()  # noqa: S314 - our own test reports
        suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
        for suite in suites:
            tests = int(suite.get("tests", 0))
            bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skip = int(suite.get("skipped", 0))
            passed += tests - bad - skip
            failed += bad
            skipped += skip
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(f"summary: {line}")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

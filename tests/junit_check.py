"""Reads a JUnit XML file with junitparser (PyPI), a standard JUnit parser,
and prints what it understood as one JSON object: per suite its name and
counts, per case its name and result (passed, failure, skipped, error) with
the message. tests/verdict.rs checks fleetbench's --junit output with it.

Usage: python3 tests/junit_check.py FILE
"""

import json
import sys

try:
    from junitparser import JUnitXml
except ImportError:
    sys.exit("junitparser is missing: install the PyPI package junitparser (pip install junitparser)")


def main(path):
    xml = JUnitXml.fromfile(path)
    suites = []
    for suite in xml:
        cases = []
        for case in suite:
            results = [(type(r).__name__.lower(), r.message) for r in case.result]
            kind, message = results[0] if results else ("passed", None)
            cases.append({"name": case.name, "result": kind, "message": message})
        suites.append(
            {
                "name": suite.name,
                "tests": suite.tests,
                "failures": suite.failures,
                "skipped": suite.skipped,
                "time": suite.time,
                "cases": cases,
            }
        )
    print(json.dumps({"suites": suites}))


if __name__ == "__main__":
    main(sys.argv[1])

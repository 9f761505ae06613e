"""Prints a pip constraints file pinning every dependency in setup.cfg to its declared lower bound.

`PIP_CONSTRAINT=<this output> make test VENV=.venv-lowest` then checks that the lower bounds are
true: the oldest stack a user may get installs, trains and passes the tests.
"""

import configparser
import pathlib
import re
import sys

REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*(?P<low>[^,;\s]+)")


def lowest_pins(setup_cfg: pathlib.Path) -> list[str]:
    """`name==low` for each `name>=low` in install_requires; one without a bound is an error."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    pins = []
    for line in parser["options"]["install_requires"].split("\n"):
        if not line.strip():
            continue
        match = REQUIREMENT.match(line.strip())
        if match is None:
            sys.exit(f"{setup_cfg}: '{line.strip()}' has no '>=' lower bound to check; add one.")
        pins.append(f"{match['name']}=={match['low']}")
    return pins


if __name__ == "__main__":
    root = pathlib.Path(__file__).resolve().parent.parent
    print("\n".join(lowest_pins(root / "setup.cfg")))

"""CI: the wheel built from the sdist holds the same files, byte for byte, as the wheel built
from the checkout (argv[1], argv[2])."""

import hashlib
import sys
import zipfile


def contents(path: str) -> dict[str, str]:
    with zipfile.ZipFile(path) as wheel:
        return {n: hashlib.sha256(wheel.read(n)).hexdigest() for n in wheel.namelist()}


a, b = contents(sys.argv[1]), contents(sys.argv[2])
differ = sorted(n for n in a.keys() | b.keys() if a.get(n) != b.get(n))
if differ:
    sys.exit("error: the two wheels differ in " + ", ".join(differ))
print(f"the sdist builds the same wheel: {len(a)} files")

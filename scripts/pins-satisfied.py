"""Exit 0 if every `name==version` pin in the given requirements file is installed."""
import importlib.metadata as metadata
import re
import sys

for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, version = line.partition("==")
    name = re.sub(r"\[.*\]", "", name).strip()
    try:
        if metadata.version(name) != version.strip():
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)

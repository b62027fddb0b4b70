#!/usr/bin/env python
"""Offline stand-in for the get-pip.py bootstrap script that ansible-test downloads.

ansible-test bootstraps pip in each sanity virtual environment by downloading
get-pip-<version>.py from a host this build environment cannot reach. It runs the
cached script as ``python get_pip.py [pip options] pip==X setuptools==Y wheel==Z``.
This stand-in bootstraps pip from the interpreter's bundled wheel (ensurepip) and then
installs the requested versions from the package index.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import subprocess
import sys

# get-pip.py understands these; pip install does not.
DROPPED_ARGS = ("--no-setuptools", "--no-wheel")


def main():
    args = [arg for arg in sys.argv[1:] if arg not in DROPPED_ARGS]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade", *args])


if __name__ == "__main__":
    main()

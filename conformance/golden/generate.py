"""Regenerate the golden vectors in this folder: ``python conformance/golden/generate.py``."""

from tp_conformance.golden import generate

if __name__ == "__main__":
    for path in generate():
        print("wrote", path)

"""poser_lens: catch alignment-faking language models from their internals.

A re-implementation of the Poser benchmark (Clymer, Juang and Field, 2024) and its six
detection strategies on TransformerLens. The data layer (:mod:`poser_lens.data`) reads Poser
checkouts and generates our own scenarios; the command line is :mod:`poser_lens.cli`.

Importing this package is cheap: it imports neither torch nor TransformerLens.

Example:
    >>> import poser_lens
    >>> poser_lens.__version__
    '0.1.0'
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

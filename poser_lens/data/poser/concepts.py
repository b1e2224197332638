"""The concept example files of a Poser checkout (``src/detection_strategies/concepts/``)."""

from __future__ import annotations

from poser_lens.data.poser.layout import resolve_root
from poser_lens.data.poser.records import PathLike, PoserFormatError, _records


def load_concepts(root: PathLike) -> dict[str, list[str]]:
    """Load the concept example files of strategy 4 (the ``old/`` subfolder is ignored).

    Args:
        root: A Poser checkout, or its data folder inside the checkout.

    Returns:
        Concept name (file stem, e.g. ``security``) -> its example texts; empty if there is
        no concepts folder.

    Raises:
        PoserFormatError: If a file is not a list of ``{"example": str}`` objects.

    Example:
        >>> import tempfile, pathlib, json
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> folder = root / "src" / "detection_strategies" / "concepts"
        >>> folder.mkdir(parents=True)
        >>> _ = (folder / "care.json").write_text(json.dumps([{"example": "Locks the door."}]))
        >>> load_concepts(root)
        {'care': ['Locks the door.']}
    """
    folder = resolve_root(root).concepts
    if folder is None or not folder.is_dir():
        return {}
    concepts = {}
    for path in sorted(folder.glob("*.json")):
        examples = []
        for i, rec in enumerate(_records(path)):
            if not (
                isinstance(rec, dict)
                and set(rec) == {"example"}
                and isinstance(rec["example"], str)
            ):
                raise PoserFormatError(str(path), i, 'expected {"example": <string>}')
            examples.append(rec["example"])
        concepts[path.stem] = examples
    return concepts

"""YAML parsing with a size budget: recipes and ``--set`` values cannot explode through aliases.

``yaml.safe_load`` builds only plain data, but an alias (``*name``) shares the node it names, so a
few hundred bytes of nested aliases (the "billion laughs" document) describe 10**9 values. The
loaded object stays small because it is shared; everything that walks it later (validation,
deep copies, the error message that quotes it) pays the expanded size. Here the parsed node graph
is measured with aliases expanded before any Python object is built, and refused past
:data:`MAX_RECIPE_SIZE`; a recursive alias and a document nested too deeply are refused too.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_RECIPE_BYTES", "MAX_RECIPE_SIZE", "YamlLimitError", "load_yaml"]

#: The most values plus scalar characters a recipe may expand to (a recipe holds a few thousand).
MAX_RECIPE_SIZE = 4_000_000
#: The largest recipe file read (the expanded size can never be below the file's).
MAX_RECIPE_BYTES = 4 << 20


class YamlLimitError(ValueError):
    """A YAML document past the size budget, with a recursive alias, or nested too deeply."""


def expanded_size(root: yaml.Node, limit: int = MAX_RECIPE_SIZE) -> int:
    """Values plus scalar characters of the document with every alias expanded (stops past ``limit``).

    Each node is measured once (aliases share nodes), so the cost is linear in the file.

    Raises:
        YamlLimitError: the size passes ``limit`` or an alias refers to a node that contains it.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative: the depth of the document does not matter here
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes and not children_done:
            continue
        children = _children(node)
        if not children_done:
            if key in open_nodes:
                raise YamlLimitError("an alias (*name) refers to a collection that contains it")
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        open_nodes.discard(key)
        size = 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else sum(sizes[id(c)] for c in children))
        if size > limit:
            raise YamlLimitError(
                f"it expands to more than {limit:,} values and characters through its aliases (*name); "
                "is it a 'billion laughs' document?"
            )
        sizes[key] = size
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_yaml(text: str, limit: int = MAX_RECIPE_SIZE) -> Any:
    """``yaml.safe_load(text)`` after checking the expanded size of the document.

    Raises:
        YamlLimitError: the document is too large expanded, recursive, or nested too deeply.
        yaml.YAMLError: it is not valid YAML.
    """
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlLimitError("it is nested too deeply") from None
        if node is None:
            return None
        expanded_size(node, limit)
        return loader.construct_document(node)
    finally:
        loader.dispose()

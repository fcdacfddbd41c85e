"""YAML parsing for recipes: a size budget, no duplicate keys, and numbers as a user writes them.

``yaml.safe_load`` builds only plain data, but an alias (``*name``) shares the node it names, so a
few hundred bytes of nested aliases (the "billion laughs" document) describe 10**9 values. The
loaded object stays small because it is shared; everything that walks it later (validation,
deep copies, the error message that quotes it) pays the expanded size. Here the parsed node graph
is measured with aliases expanded before any Python object is built, and refused past
:data:`MAX_RECIPE_SIZE`; a recursive alias and a document nested too deeply are refused too.

:class:`RecipeLoader` is ``yaml.SafeLoader`` with two changes, so that nothing a user wrote is
silently dropped or read as something else:

* a key given twice in one mapping is an error naming both lines (``safe_load`` keeps the last
  one without a word); keys merged in with ``<<: *base`` may still be overridden, as YAML intends;
* numbers are read by YAML 1.2's rules, as JSON parsers read them: ``1e-3``, ``1E5`` and
  ``1.0e3`` are floats (PyYAML's YAML 1.1 rules read an exponent without a dot or without a sign
  as a string, which the strict recipe schema would then refuse), and ``1:30`` and ``010`` stay
  strings (YAML 1.1 reads them as 90 and 8).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["MAX_RECIPE_BYTES", "MAX_RECIPE_SIZE", "DuplicateKeyError", "RecipeLoader", "YamlLimitError", "load_yaml"]

#: The most values plus scalar characters a recipe may expand to (a recipe holds a few thousand).
MAX_RECIPE_SIZE = 4_000_000
#: The largest recipe file read (the expanded size can never be below the file's).
MAX_RECIPE_BYTES = 4 << 20


class YamlLimitError(ValueError):
    """A YAML document past the size budget, with a recursive alias, or nested too deeply."""


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that gives the same key twice (``problem_mark`` is the second one)."""


#: Integers as YAML 1.2 writes them (no 1.1 sexagesimal ``1:30`` = 90, no ``010`` = 8 octal).
_INT = re.compile(r"^(?:[-+]?0b[01_]+|[-+]?0x[0-9a-fA-F_]+|[-+]?(?:0|[1-9][0-9_]*))$")
#: Floats as YAML 1.2 and JSON write them: ``1e-3``, ``1E5``, ``5.0e-4``, ``.5``, ``.inf``, ``.nan``.
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and reads ``1e-3`` as a number (see the module)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # merged keys may be overridden: YAML's intent
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: SafeLoader refuses it with its own message
            if first is not key_node.start_mark:
                raise DuplicateKeyError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"key {key!r} is given twice in one mapping, at {_where(first)} and at "
                    f"{_where(key_node.start_mark)}; YAML would silently keep only the last: remove one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep)


def _where(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NUMBER_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RecipeLoader.add_implicit_resolver(_NUMBER_TAGS[0], _INT, list("-+0123456789"))
RecipeLoader.add_implicit_resolver(_NUMBER_TAGS[1], _FLOAT, list("-+0123456789."))


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
    """``yaml.safe_load(text)`` with :class:`RecipeLoader`, after checking the expanded size of the document.

    Raises:
        YamlLimitError: the document is too large expanded, recursive, or nested too deeply.
        DuplicateKeyError: a mapping gives a key twice.
        yaml.YAMLError: it is not valid YAML.
    """
    loader = RecipeLoader(text)
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

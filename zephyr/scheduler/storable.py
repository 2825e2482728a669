"""The request schemas of /openapi.json, told what `schemas.check_storable` refuses everywhere.

PostgreSQL stores no NUL character in text or jsonb, so the API refuses a request with one in any
string or object key, at any depth (400 naming the field). pydantic's schemas do not say so; this
adds it to every string, every object's property names, and every free-form value (`body`,
`message`, `args`, `kwargs`), which becomes a `JsonValue`: JSON whose texts hold no NUL.
"""

from __future__ import annotations

from typing import Any

NO_NUL = "^[^\\u0000]*$"
JSON_VALUE = "JsonValue"
_JSON_REF = {"$ref": f"#/components/schemas/{JSON_VALUE}"}
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": "any JSON value whose texts and keys hold no NUL character",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": _JSON_REF},
        {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": _JSON_REF},
    ],
}
# Keywords that make a schema say something about its value's type.
_TYPED = frozenset({"type", "anyOf", "oneOf", "allOf", "$ref", "const", "enum", "not"})


def forbid_nul(components: dict[str, Any]) -> None:
    """Add the NUL rule to every request schema in `components` (in place) and `JsonValue`."""
    for schema in components.values():
        _schema(schema)
    components[JSON_VALUE] = JSON_VALUE_SCHEMA


def _schema(schema: Any) -> None:
    """One schema and the schemas under it."""
    if not isinstance(schema, dict):
        return
    _own_rule(schema)
    for name in ("properties", "$defs"):
        for key, value in schema.get(name, {}).items():
            schema[name][key] = _value(value)
    if "items" in schema:
        schema["items"] = _value(schema["items"])
    if "additionalProperties" in schema and schema["additionalProperties"] is not False:
        schema["additionalProperties"] = _value(schema["additionalProperties"])
    for name in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(name, []):
            _schema(branch)
    _schema(schema.get("not"))


def _own_rule(schema: dict[str, Any]) -> None:
    """The NUL rule for the strings or property names `schema` itself describes."""
    types = schema.get("type")
    # A string with a pattern, enum or const of its own is left to it: those patterns exclude NUL
    # themselves (a second pattern in `allOf` made schemathesis filter most of what it generated).
    free_text = not {"pattern", "enum", "const"} & schema.keys()
    if free_text and (types == "string" or (isinstance(types, list) and "string" in types)):
        schema["pattern"] = NO_NUL
    if types == "object" and schema.get("additionalProperties") is not False:
        schema["propertyNames"] = {"pattern": NO_NUL}


def _value(schema: Any) -> Any:
    """The schema of a value (property, item, map value): a free-form one becomes JsonValue."""
    if schema is True:
        return dict(_JSON_REF)
    if isinstance(schema, dict) and not _TYPED & schema.keys():
        # In anyOf, not beside the description: readers that follow a $ref (the dashboard's
        # submit form) keep the field's own description.
        return {**schema, "anyOf": [_JSON_REF]}
    _schema(schema)
    return schema

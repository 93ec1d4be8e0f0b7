"""The API server's string rules as data (apimachinery's IsXxx): a pattern, a length and their messages."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """A pattern a whole string must match, a maximum length, and the API server's words for each."""

    name: str
    pattern: str
    max_len: int | None
    message: str
    examples: tuple = ()

    def check(self, value: str) -> list[str]:
        """The messages this value earns (empty when it is valid)."""
        found = []
        if self.max_len is not None and len(value) > self.max_len:
            found.append(f"must be no more than {self.max_len} characters")
        if not re.fullmatch(self.pattern, value):
            found.append(regex_error(self.message, self.pattern, self.examples))
        return found


def regex_error(message: str, pattern: str, examples: tuple) -> str:
    """The API server's shape: `<rule> (e.g. 'a',  or 'b', regex used for validation is '<pattern>')`."""
    shown = "".join(("" if i == 0 else " or ") + f"'{e}', " for i, e in enumerate(examples))
    return f"{message} ({'e.g. ' + shown if examples else ''}regex used for validation is '{pattern}')"


_ALNUM = "[A-Za-z0-9]"
_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = Rule("DNS-1123 label", _LABEL, 63,
                     "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                     "start and end with an alphanumeric character", ("my-name", "123-abc"))
DNS1123_SUBDOMAIN = Rule("DNS-1123 subdomain", _LABEL + r"(\." + _LABEL + ")*", 253,
                         "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                         "and must start and end with an alphanumeric character", ("example.com",))
WILDCARD_SUBDOMAIN = Rule("wildcard DNS-1123 subdomain", r"\*\." + DNS1123_SUBDOMAIN.pattern, 253,
                          "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which "
                          "must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric "
                          "character", ("*.example.com",))
DNS1035_LABEL = Rule("DNS-1035 label", "[a-z]([-a-z0-9]*[a-z0-9])?", 63,
                     "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                     "alphabetic character, and end with an alphanumeric character", ("my-name", "abc-123"))
QUALIFIED_NAME_PART = Rule("name part", f"({_ALNUM}[-A-Za-z0-9_.]*)?{_ALNUM}", 63,
                           "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                           "alphanumeric character", ("MyName", "my.name", "123-abc"))
LABEL_VALUE = Rule("label value", f"(({_ALNUM}[-A-Za-z0-9_.]*)?{_ALNUM})?", 63,
                   "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
                   "must start and end with an alphanumeric character", ("MyValue", "my_value", "12345"))
CONFIG_KEY = Rule("config key", "[-._a-zA-Z0-9]+", 253,
                  "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                  ("key.name", "KEY_NAME", "key-name"))


def qualified_name(value: str) -> list[str]:
    """IsQualifiedName: an optional DNS-subdomain prefix and '/', then a name part (label and annotation keys)."""
    parts = value.split("/")
    if len(parts) > 2:
        return ["a qualified name " + regex_error(QUALIFIED_NAME_PART.message, QUALIFIED_NAME_PART.pattern,
                                                  QUALIFIED_NAME_PART.examples)
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    found = []
    if len(parts) == 2:
        if not parts[0]:
            found.append("prefix part must be non-empty")
        else:
            found += ["prefix part " + m for m in DNS1123_SUBDOMAIN.check(parts[0])]
    name = parts[-1]
    if not name:
        return found + ["name part must be non-empty"]
    return found + ["name part " + m for m in QUALIFIED_NAME_PART.check(name)]


def config_key(value: str) -> list[str]:
    """IsConfigMapKey: the key pattern, and never `.`, `..` or anything starting with `..`."""
    found = CONFIG_KEY.check(value)
    if value == ".":
        found.append("must not be '.'")
    elif value == "..":
        found.append("must not be '..'")
    elif value.startswith(".."):
        found.append("must not start with '..'")
    return found


def port_number(value: int) -> list[str]:
    """IsValidPortNum: 1-65535."""
    return [] if 1 <= value <= 65535 else ["must be between 1 and 65535, inclusive"]


def port_name(value: str) -> list[str]:
    """IsValidPortName (an IANA_SVC_NAME): at most 15 characters, [a-z0-9-], a letter, no '--', no '-' at an end."""
    found = []
    if len(value) > 15:
        found.append("must be no more than 15 characters")
    if not re.fullmatch("[-a-z0-9]+", value):
        found.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", value):
        found.append("must contain at least one letter (a-z)")
    if "--" in value:
        found.append("must not contain consecutive hyphens")
    if value.startswith("-") or value.endswith("-"):
        found.append("must not begin or end with a hyphen")
    return found


def env_var_name(value: str) -> list[str]:
    """IsEnvVarName (relaxed, the default since 1.32): printable ASCII except '='."""
    if value and all(" " <= ch <= "~" and ch != "=" for ch in value):
        return []
    return ["a valid environment variable name must consist only of printable ASCII characters other than '='"]


def local_path(value: str, reserved: bool = True) -> list[str]:
    """validateLocalDescendingPath (+NonReserved): relative, no '..' element, not starting with '..'."""
    found = []
    if value.startswith("/"):
        found.append("must be a relative path")
    if ".." in value.replace("\\", "/").split("/"):
        found.append("must not contain '..'")
    if reserved and value.startswith(".."):
        found.append("must not start with '..'")
    return found


def is_int(value) -> bool:
    """A JSON integer (YAML's true/false are not numbers)."""
    return isinstance(value, int) and not isinstance(value, bool)

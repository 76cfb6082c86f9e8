"""Identity resolution, the pure part: identifiers, the links between them with their evidence,
the guards that refuse dangerous links, and the persons the accepted links make (engine.identity.
persons). No store and no configuration file here: the caller passes the facts and the limits."""

from .guards import BLOCKED_VALUES, Guards
from .links import Identifier, Link, Unlink, trait_identifier
from .persons import ANONYMOUS, Limits, Refusal, Resolution, anonymous_home, is_visitor, resolve

__all__ = [
    "ANONYMOUS",
    "BLOCKED_VALUES",
    "Guards",
    "Identifier",
    "Limits",
    "Link",
    "Refusal",
    "Resolution",
    "Unlink",
    "anonymous_home",
    "is_visitor",
    "resolve",
    "trait_identifier",
]

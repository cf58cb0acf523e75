"""dealbooks CRM client: one async client for HubSpot's CRM APIs, used by every service.

`CrmClient(tokens, base_url=...)` talks to https://api.hubapi.com or the sandbox unchanged;
`client.portal(portal_id)` gives the operations for one portal. Errors are `CrmError`
subclasses; webhook signatures are checked with `verify_signature_v3`.
"""

from dealbooks_crm import _client, _errors, _limits, _models, _paths, _types, _values, _webhooks
from dealbooks_crm._client import *  # noqa: F403
from dealbooks_crm._errors import *  # noqa: F403
from dealbooks_crm._limits import *  # noqa: F403
from dealbooks_crm._models import *  # noqa: F403
from dealbooks_crm._paths import *  # noqa: F403
from dealbooks_crm._types import *  # noqa: F403
from dealbooks_crm._values import *  # noqa: F403
from dealbooks_crm._webhooks import *  # noqa: F403

# The package's names are those its modules list in their `__all__`.
__all__: list[str] = []
__all__ += _client.__all__
__all__ += _errors.__all__
__all__ += _limits.__all__
__all__ += _models.__all__
__all__ += _paths.__all__
__all__ += _types.__all__
__all__ += _values.__all__
__all__ += _webhooks.__all__

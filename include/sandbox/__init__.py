"""Local, stateful emulator of the Stripe, Twilio and Segment endpoints the erasure pipeline calls.

One HTTP server on a loopback address serves every API under its own prefix (``/stripe``,
``/twilio/<subdomain>``, ``/segment/profiles``, ``/segment/api``) plus a control and
introspection API under ``/_sandbox``. See ``docs/sandbox.md`` for the URL layout, the seeded
people, the fault knobs and the known differences from the real services.

The sandbox never imports ``gdpr_erasure``: it is a product feature of its own that the pipeline's
hooks, tests and demo talk to over HTTP only.
"""

from sandbox.server import create_app, serve
from sandbox.state import SandboxState, Settings

__all__ = ["SandboxState", "Settings", "create_app", "serve"]

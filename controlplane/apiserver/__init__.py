"""The Kubernetes-shaped HTTP API server.

``create_app(registry, store=..., authenticator=..., info=...)`` builds the ASGI app (a
hand-written router over :class:`controlplane.registry.Registry`); ``serve_api(app, host=...,
port=..., ssl_certfile=..., ssl_keyfile=...)`` serves it on trio with the lean built-in
HTTP/1.1 server (``engine="builtin"``, the default: ~10x less CPU per request than hypercorn
here) or hypercorn (``engine="hypercorn"``). kubectl sends its token only over TLS, so real
clusters serve HTTPS.
"""

from ._app import ApiApp as ApiApp
from ._app import create_app as create_app
from ._auth import Authenticator as Authenticator
from ._auth import StaticTokenAuthenticator as StaticTokenAuthenticator
from ._auth import User as User
from ._auth import default_authorize as default_authorize
from ._limits import MAX_BODY_BYTES as MAX_BODY_BYTES
from ._serve import serve_api as serve_api

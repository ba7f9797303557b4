"""The Kubernetes-shaped HTTP API server (a hand-written ASGI app served by hypercorn on trio)."""

from ._app import ApiApp as ApiApp
from ._app import create_app as create_app
from ._auth import Authenticator as Authenticator
from ._auth import StaticTokenAuthenticator as StaticTokenAuthenticator
from ._auth import User as User
from ._auth import default_authorize as default_authorize
from ._limits import MAX_BODY_BYTES as MAX_BODY_BYTES
from ._serve import serve_api as serve_api
